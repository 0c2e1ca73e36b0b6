//! Configuration values checked once (linfa's parameter-guard pattern): a function that needs a
//! valid configuration takes `&Checked<T>`, and the only way to get one is [`Validate::check`],
//! so a value is validated exactly once, where it is made, and never again down the call chain.

use crate::Result;

/// A configuration whose every field was checked; dereferences to the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked<T>(T);

impl<T> std::ops::Deref for Checked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Validate> Checked<T> {
    /// A changed copy, checked again (the change may break what was checked).
    pub fn with(&self, change: impl FnOnce(&mut T)) -> Result<Checked<T>>
    where
        T: Clone,
    {
        let mut value = self.0.clone();
        change(&mut value);
        value.check()
    }
}

impl<T> Checked<T> {
    /// The configuration itself.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// A configuration that can check its own fields; errors name the field.
pub trait Validate: Sized {
    /// Checks every field.
    fn validate(&self) -> Result<()>;

    /// Checks every field once and wraps the value as [`Checked`].
    fn check(self) -> Result<Checked<Self>> {
        self.validate()?;
        Ok(Checked(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[derive(Clone, Debug, PartialEq)]
    struct Rate(f64);

    impl Validate for Rate {
        fn validate(&self) -> Result<()> {
            if self.0 > 0.0 {
                Ok(())
            } else {
                Err(Error::config("rate", "must be > 0"))
            }
        }
    }

    #[test]
    fn only_valid_values_are_checked_and_changes_are_checked_again() {
        assert!(Rate(-1.0).check().unwrap_err().to_string().contains("rate"));
        let r = Rate(0.5).check().unwrap();
        assert_eq!(r.0 .0, 0.5);
        assert_eq!(r.with(|x| x.0 *= 2.0).unwrap().into_inner(), Rate(1.0));
        assert!(r.with(|x| x.0 = 0.0).is_err());
    }
}
