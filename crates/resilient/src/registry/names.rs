//! Names declared in code ([`names!`](crate::names)): a registry name spelt once, as a
//! constant, so that a misspelling where it is used is a compile error.

use std::fmt;

/// A registry name declared in code with [`names!`](crate::names). Lookups take it
/// wherever they take a `&str`, and the attributes take a path to one
/// (`#[resilient::pattern(names::PAYMENTS)]`, `breaker = names::PAYMENTS`): a misspelt
/// constant does not compile, where a misspelt string would only fail at run time.
///
/// ```
/// use resilient::registry::Name;
/// const SEARCH: Name = Name::new("search");
/// assert_eq!(SEARCH.as_str(), "search");
/// assert_eq!(SEARCH.to_string(), "search");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(&'static str);

impl Name {
    /// A name.
    ///
    /// ```
    /// const DB: resilient::registry::Name = resilient::registry::Name::new("db");
    /// # let _ = DB;
    /// ```
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The name as a string.
    ///
    /// ```
    /// assert_eq!(resilient::registry::Name::new("db").as_str(), "db");
    /// ```
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0.to_owned()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Declares registry names as constants of type [`Name`](crate::registry::Name), each spelt
/// once: the attributes and lookups then refer to the constant, and a typo is a compile
/// error.
///
/// ```
/// resilient::names! {
///     /// The payment provider's pipeline, breaker and limiter.
///     pub PAYMENTS = "payments";
///     SEARCH = "search";
/// }
/// assert_eq!(PAYMENTS.as_str(), "payments");
/// let err = resilient::registry().breaker(SEARCH).unwrap_err();
/// assert!(err.to_string().contains("`search`"));
/// ```
#[macro_export]
macro_rules! names {
    ($($(#[$meta:meta])* $vis:vis $name:ident = $value:literal;)*) => {
        $(
            $(#[$meta])*
            $vis const $name: $crate::registry::Name = $crate::registry::Name::new($value);
        )*
    };
}
