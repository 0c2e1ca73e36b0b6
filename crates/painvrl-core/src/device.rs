//! Device selection: the one place where `cpu`, `cuda`, `cuda:N` and `auto` are understood.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A requested compute device, as written in configs and on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// CUDA device 0 when CUDA is available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device with the given ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// Resolves the request against this machine. `cuda` on a machine without CUDA is an error
    /// rather than a silent fall-back to the CPU.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceSpec::Cuda(n) => {
                let count = tch::Cuda::device_count() as usize;
                if !tch::Cuda::is_available() || count == 0 {
                    Err(Error::Device(format!(
                        "cuda:{n} requested but libtorch sees no CUDA device (is this a CPU-only build, or is the driver missing?)"
                    )))
                } else if n >= count {
                    Err(Error::Device(format!("cuda:{n} requested but only {count} CUDA device(s) exist")))
                } else {
                    Ok(tch::Device::Cuda(n))
                }
            }
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match t.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceSpec::Cuda(n)),
                _ => Err(Error::config("device", format!("'{s}' is not one of cpu, cuda, cuda:N, auto"))),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

/// Sets libtorch's intra-op thread count and seeds its global generator. Call once at start-up;
/// `threads = 0` keeps libtorch's default.
pub fn init_runtime(threads: usize, seed: u64) {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    tch::manual_seed(seed as i64);
}

/// `host`, a CPU tensor, copied to `device`. On CUDA the copy goes through page-locked memory
/// and is asynchronous, so the host does not wait for the GPU's queue to drain; elsewhere it is a
/// plain copy.
pub fn to_device_async(host: &tch::Tensor, device: tch::Device) -> tch::Tensor {
    if device.is_cuda() {
        host.pin_memory(device).to_device_(device, host.kind(), true, false)
    } else {
        host.to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("AUTO".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        for s in ["tpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let e = s.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(e.contains("device"), "{e}");
        }
    }

    #[test]
    fn round_trips_through_strings() {
        for d in [DeviceSpec::Auto, DeviceSpec::Cpu, DeviceSpec::Cuda(1)] {
            assert_eq!(d.to_string().parse::<DeviceSpec>().unwrap(), d);
        }
    }

    #[test]
    fn cpu_and_auto_resolve_everywhere() {
        assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), tch::Device::Cpu);
        let auto = DeviceSpec::Auto.resolve().unwrap();
        assert_eq!(auto.is_cuda(), tch::Cuda::is_available());
    }

    #[test]
    fn missing_cuda_device_is_an_error() {
        let err = DeviceSpec::Cuda(64).resolve().unwrap_err().to_string();
        assert!(err.contains("cuda:64"), "{err}");
    }
}
