//! The eSMS API as the simulator serves it, written from the API
//! description (the calls, their paths under the base URL, the tier
//! numbers), not taken from oapkg: a client that gets one of these wrong
//! then fails against the simulator instead of agreeing with itself.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the API lives, as on the real host (`https://rest.esms.vn` + this).
pub const BASE_PATH: &str = "/MainService.svc/json/";

/// The three calls the simulator answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// `RegisOAPackageJson/`: buy one OA package.
    Purchase,
    /// `ZNS/GetListZOA/`: the OAs registered to the account.
    ListOas,
    /// `GetBalance_json`: the account balance.
    Balance,
}

impl Call {
    pub const ALL: [Call; 3] = [Call::Purchase, Call::ListOas, Call::Balance];

    /// The path under [`BASE_PATH`], spelled as eSMS spells it.
    pub fn path(self) -> &'static str {
        match self {
            Call::Purchase => "RegisOAPackageJson/",
            Call::ListOas => "ZNS/GetListZOA/",
            Call::Balance => "GetBalance_json",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// The `Package` field of a purchase: the tier, as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Package {
    /// `1`
    Trial,
    /// `2`
    Advanced,
    /// `3`
    Premium,
}

impl Package {
    pub const ALL: [Package; 3] = [Package::Trial, Package::Advanced, Package::Premium];

    /// The number sent in `Package`.
    pub fn number(self) -> u8 {
        match self {
            Package::Trial => 1,
            Package::Advanced => 2,
            Package::Premium => 3,
        }
    }

    /// The package a `Package` number stands for, if any.
    pub fn from_number(n: u64) -> Option<Package> {
        Package::ALL
            .into_iter()
            .find(|p| u64::from(p.number()) == n)
    }
}

/// A date in the only shape `Dateactive` takes, `yyyy-MM-dd` (ten
/// characters, a real calendar day).
pub(crate) fn is_api_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && text.parse::<jiff::civil::Date>().is_ok()
}

/// What stands in for a key value in the request log.
pub const REDACTED: &str = "[redacted]";

/// An account key: `Debug` never prints it, so a configuration pointed at
/// real keys by mistake cannot leak them into a log.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Key(String);

impl Key {
    pub(crate) fn new(value: impl Into<String>) -> Key {
        Key(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}
