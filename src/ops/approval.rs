//! Whether `apply` may go ahead without asking, must ask, or must refuse:
//! the one rule the CLI follows before buying (SPEC, Apply: a question on
//! a terminal, `--auto-approve` or a reviewed plan file otherwise). Pure:
//! the caller says what it knows (a plan file, the flag, the number of
//! requests, whether standard input is a terminal) and does what this says.

/// What to do before the requests go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    /// Nothing to ask: a reviewed plan file, `--auto-approve`, or nothing
    /// is bought (only label changes).
    Given,
    /// Ask `Type 'yes' to purchase N package(s):` on the terminal.
    Ask,
    /// No one to ask (standard input is not a terminal): refuse, buying
    /// nothing.
    Refuse,
}

impl Approval {
    /// The rule. `reviewed`: the plan comes from a saved plan file.
    pub fn of(reviewed: bool, auto_approve: bool, requests: usize, terminal: bool) -> Approval {
        if reviewed || auto_approve || requests == 0 {
            Approval::Given
        } else if terminal {
            Approval::Ask
        } else {
            Approval::Refuse
        }
    }

    /// Whether the plan must be shown even when output is quiet: the
    /// question is about it.
    pub fn shows_the_plan(self) -> bool {
        self != Approval::Given
    }
}

#[cfg(test)]
mod tests {
    use super::Approval::{self, Ask, Given, Refuse};

    #[test]
    fn a_purchase_goes_ahead_only_when_approved() {
        // (reviewed, auto_approve, requests, terminal) -> what to do
        let rows = [
            ((true, false, 3, false), Given),
            ((false, true, 3, false), Given),
            ((false, false, 0, false), Given),
            ((false, false, 3, true), Ask),
            ((false, false, 3, false), Refuse),
            ((true, true, 3, true), Given),
        ];
        for ((reviewed, auto, requests, terminal), expected) in rows {
            assert_eq!(
                Approval::of(reviewed, auto, requests, terminal),
                expected,
                "{reviewed} {auto} {requests} {terminal}"
            );
        }
        assert!(Ask.shows_the_plan() && Refuse.shows_the_plan() && !Given.shows_the_plan());
    }
}
