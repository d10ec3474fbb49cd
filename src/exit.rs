//! The one exit-status table, documented in the README ("Exit codes").

/// How an oapkg process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success; `plan --detailed-exitcode`: nothing to buy.
    Success,
    /// 1: an error: invalid input, refused state, guard refused, API or
    /// network failure, lock held.
    Failure,
    /// 2: `plan --detailed-exitcode`: something to buy; `expiring`: something
    /// expires.
    Changes,
    /// 101: an internal bug in oapkg (an error only a mistake in oapkg can
    /// cause, or a panic: Rust's own panic status), with a request to report
    /// it. Never a verdict on the input.
    Bug,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Changes => 2,
            ExitStatus::Bug => 101,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}
