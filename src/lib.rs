//! oapkg: declarative, exactly-once purchasing of Zalo OA packages via eSMS.

pub mod apply;
pub mod cli;
pub mod esms;
pub mod exit;
pub mod expiring;
pub mod manifest;
pub mod plan;
pub mod spec;
pub mod state;
pub mod watch;
