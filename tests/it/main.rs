//! The integration tests: one binary driving the real `oapkg` executable in
//! temporary directories.

mod apply;
mod apply_output;
mod cli;
mod costs;
mod coverage;
mod disk;
mod doc_links;
mod escapes;
mod expiring;
mod faults;
mod fifos;
mod gitops;
mod hostile;
mod in_flight;
mod init;
mod key_in_manifest;
mod labels;
mod large_account;
mod modes;
mod moved;
mod only;
mod plan;
mod policies;
mod properties;
mod s3;
mod saved;
mod secrets;
mod state;
mod state_edits;
mod support;
mod unknown;
mod validate;
mod watch;
mod watch_apply;
mod watch_service;
