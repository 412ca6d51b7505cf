//! The consent state machine: whether anything may be captured, queued or sent.
//!
//! Architecture Invariant: capture happens only in [`State::Granted`]. Every transition out of it
//! is a [`Change::Stop`], on which the tracker drops its queue and the glue drops its listeners.

use crate::config::ConsentMode;

/// Where the visitor's consent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Consent is required and nobody has answered yet: nothing is captured.
    Pending,
    Granted,
    /// Denied or revoked by the visitor, or implied by Global Privacy Control / Do-Not-Track.
    Denied,
}

/// A consent command from the page (`waymark('consent', …)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Grant,
    Deny,
    Revoke,
}

impl Command {
    /// `"grant"`, `"deny"` or `"revoke"`.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "grant" => Command::Grant,
            "deny" => Command::Deny,
            "revoke" => Command::Revoke,
            _ => return None,
        })
    }
}

/// What the caller must do after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Capture begins: attach listeners, record the current page view.
    Start,
    /// Capture ends: drop the queue and every listener.
    Stop,
    Nothing,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Consent {
    state: State,
}

impl Consent {
    /// The state at load. A privacy signal (GPC, DNT=1) counts as a denial that only the
    /// visitor's own `grant` can lift; `not-required` is the page's default, not the visitor's
    /// choice, so it does not override the signal.
    pub fn new(mode: ConsentMode, privacy_signal: bool) -> Consent {
        let state = if privacy_signal {
            State::Denied
        } else if mode == ConsentMode::NotRequired {
            State::Granted
        } else {
            State::Pending
        };
        Consent { state }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn granted(&self) -> bool {
        self.state == State::Granted
    }

    /// Applies a command. An explicit `grant` is the visitor's decision and wins over a privacy
    /// signal; `deny` and `revoke` always stop.
    pub fn apply(&mut self, cmd: Command) -> Change {
        let was = self.state;
        self.state = match cmd {
            Command::Grant => State::Granted,
            Command::Deny | Command::Revoke => State::Denied,
        };
        match (was, self.state) {
            (State::Granted, State::Granted) => Change::Nothing,
            (_, State::Granted) => Change::Start,
            (State::Granted, _) => Change::Stop,
            _ => Change::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentMode::*;

    #[test]
    fn initial_states() {
        assert_eq!(Consent::new(Required, false).state(), State::Pending);
        assert_eq!(Consent::new(NotRequired, false).state(), State::Granted);
        assert_eq!(Consent::new(Required, true).state(), State::Denied);
        assert_eq!(
            Consent::new(NotRequired, true).state(),
            State::Denied,
            "the page's default does not override GPC/DNT"
        );
    }

    #[test]
    fn transitions() {
        let mut c = Consent::new(Required, false);
        assert_eq!(c.apply(Command::Grant), Change::Start);
        assert!(c.granted());
        assert_eq!(c.apply(Command::Grant), Change::Nothing);
        assert_eq!(c.apply(Command::Revoke), Change::Stop);
        assert_eq!(c.state(), State::Denied);
        assert_eq!(c.apply(Command::Deny), Change::Nothing);
        assert_eq!(
            c.apply(Command::Grant),
            Change::Start,
            "the visitor may change their mind"
        );
        assert_eq!(c.apply(Command::Deny), Change::Stop);

        let mut c = Consent::new(Required, false);
        assert_eq!(c.apply(Command::Deny), Change::Nothing);
        assert_eq!(c.state(), State::Denied);
    }

    #[test]
    fn explicit_grant_overrides_privacy_signal() {
        let mut c = Consent::new(NotRequired, true);
        assert!(!c.granted());
        assert_eq!(c.apply(Command::Grant), Change::Start);
        assert!(c.granted());
    }

    #[test]
    fn parse() {
        assert_eq!(Command::parse("grant"), Some(Command::Grant));
        assert_eq!(Command::parse("deny"), Some(Command::Deny));
        assert_eq!(Command::parse("revoke"), Some(Command::Revoke));
        assert_eq!(Command::parse("GRANT"), None);
    }
}
