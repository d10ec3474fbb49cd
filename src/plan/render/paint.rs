//! Terminal styles, or none: the one place oapkg's colours are named
//! (through [`anstyle`], never hand-written escape codes). Whether to colour
//! at all (a terminal, `--no-color`, `NO_COLOR`) is the caller's decision,
//! passed in as `Paint(bool)`; without colour every method returns the text
//! as it is.
//!
//! Only a few words are coloured, as Terraform does, so the plain text stays
//! readable in logs: a plan's change symbols, block comments, `Warning:` and
//! the start of its summary line; apply's result words; the `error:`,
//! `warning:` and `hint:` labels.

use anstyle::{AnsiColor, Effects, Style};

use crate::plan::Action;

/// Colouring on (`Paint(true)`) or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paint(pub bool);

const BOLD: Style = Style::new().effects(Effects::BOLD);

const fn fg(color: AnsiColor) -> Style {
    Style::new().fg_color(Some(anstyle::Color::Ansi(color)))
}

impl Paint {
    /// `text` in `style`, then reset.
    pub fn paint(self, style: Style, text: &str) -> String {
        if self.0 {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    /// A plan's change symbol in its action's colour.
    pub fn symbol(self, action: Action, symbol: char) -> String {
        let style = match action {
            Action::Purchase => fg(AnsiColor::Green),
            Action::Replace => fg(AnsiColor::Yellow),
            Action::Unconfirmed => fg(AnsiColor::Cyan),
            Action::InFlight => fg(AnsiColor::Magenta),
            Action::Orphan => fg(AnsiColor::Red),
            Action::Expired => fg(AnsiColor::BrightBlack),
            Action::Unchanged => Style::new(),
        };
        self.paint(style, &symbol.to_string())
    }

    pub fn bold(self, text: &str) -> String {
        self.paint(BOLD, text)
    }

    /// `Warning:`, `warning` and `Guards:`: bold yellow.
    pub fn warning(self, text: &str) -> String {
        self.paint(BOLD.fg_color(Some(AnsiColor::Yellow.into())), text)
    }

    /// The `error` label: bold red.
    pub fn error(self, text: &str) -> String {
        self.paint(BOLD.fg_color(Some(AnsiColor::Red.into())), text)
    }

    /// The `hint` label: bold cyan.
    pub fn hint(self, text: &str) -> String {
        self.paint(BOLD.fg_color(Some(AnsiColor::Cyan.into())), text)
    }

    /// `No changes.`: bold green.
    pub fn all_good(self, text: &str) -> String {
        self.paint(BOLD.fg_color(Some(AnsiColor::Green.into())), text)
    }

    /// A good result word (`submitted`): green.
    pub fn good(self, text: &str) -> String {
        self.paint(fg(AnsiColor::Green), text)
    }

    /// A bad result word (`failed`): red.
    pub fn bad(self, text: &str) -> String {
        self.paint(fg(AnsiColor::Red), text)
    }

    /// An open result word (`unconfirmed`, `not sent`): yellow.
    pub fn open(self, text: &str) -> String {
        self.paint(fg(AnsiColor::Yellow), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_the_text_itself() {
        let off = Paint(false);
        assert_eq!(off.error("error"), "error");
        assert_eq!(off.symbol(Action::Purchase, '+'), "+");
    }

    #[test]
    fn on_wraps_the_text_in_a_style_and_a_reset() {
        let on = Paint(true);
        assert_eq!(on.symbol(Action::Purchase, '+'), "\x1b[32m+\x1b[0m");
        assert_eq!(on.bold("Plan:"), "\x1b[1mPlan:\x1b[0m");
        assert_eq!(on.error("error"), "\x1b[1m\x1b[31merror\x1b[0m");
        assert_eq!(on.symbol(Action::Unchanged, ' '), " ");
    }
}
