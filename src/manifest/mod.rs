//! The desired set: reading manifest files and directories, validating every
//! document into [`Package`]s, and reporting every problem with its location.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{Key, Spec};

/// Where something was written: a file (as given on the command line, or
/// found under a directory given there), a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    pub line: u32,
    #[serde(default)]
    pub column: u32,
}

/// One declared package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub spec: Spec,
    pub name: Option<String>,
    pub source: Source,
}

/// Every package the manifests declare, by key, with the content hash used
/// to tell whether the manifests changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredSet {
    pub packages: BTreeMap<Key, Package>,
}
