//! Recorded runs as data: replaying an event list against a fresh core and
//! checker, shrinking a failing list by delta debugging, and the text format
//! of the regression cases under `tests/regressions/`.

use std::fmt::Write as _;

use agent_relay::core::{Config, HandshakeForm, Protocol};

use super::check::{Failure, Invariant};
use super::driver::{Driver, TraceMode};
use super::event::{OwnedEvent, Recorded, parse_num};

/// A failing (or once-failing) event list and what it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The seed it came from.
    pub seed: u64,
    /// The invariant it broke when recorded.
    pub invariant: Invariant,
    /// The relay configuration.
    pub config: Config,
    /// The driver's read size the checker assumes.
    pub read_max: usize,
    /// Whether liveness is checked at the end (the run ended healed).
    pub finish: bool,
    /// The events.
    pub events: Vec<Recorded>,
}

/// Replays `events` into a fresh core; the first failure, if any.
pub fn replay(
    config: &Config,
    read_max: usize,
    events: &[Recorded],
    finish: bool,
    trace: TraceMode,
) -> (Option<Failure>, Vec<String>) {
    let mut d = Driver::new(config.clone(), read_max, trace, false);
    for r in events {
        d.feed(r.now, r.event.as_event());
        if d.checker.failure().is_some() {
            break;
        }
    }
    if finish {
        d.checker.finish();
    }
    let lines = d.lines().cloned().collect();
    (d.checker.failure().cloned(), lines)
}

/// Shrinks `case.events` to a short list that still breaks the same
/// invariant: cut after the failing event, then remove chunks of halving
/// size while the failure persists (ddmin's complement step), until
/// `budget_replays` replays are spent.
pub fn shrink(case: &Case, budget_replays: usize) -> Case {
    let fails = |events: &[Recorded]| {
        let (v, _) = replay(
            &case.config,
            case.read_max,
            events,
            case.finish,
            TraceMode::Off,
        );
        v.filter(|v| v.invariant == case.invariant)
    };
    let mut events = case.events.clone();
    let mut spent = 0;
    if let Some(v) = fails(&events)
        && !case.finish
    {
        events.truncate(v.event as usize);
    }
    let mut chunk = events.len().div_ceil(2).max(1);
    while chunk >= 1 && spent < budget_replays {
        let mut i = 0;
        let mut removed_any = false;
        while i < events.len() && spent < budget_replays {
            let end = (i + chunk).min(events.len());
            let mut candidate = Vec::with_capacity(events.len() - (end - i));
            candidate.extend_from_slice(&events[..i]);
            candidate.extend_from_slice(&events[end..]);
            spent += 1;
            if let Some(v) = fails(&candidate) {
                events = candidate;
                if !case.finish {
                    events.truncate(v.event as usize);
                }
                removed_any = true;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        if !removed_any || chunk > 1 {
            chunk = chunk.div_ceil(2).min(chunk - usize::from(chunk > 1));
            if chunk == 0 {
                break;
            }
        }
    }
    Case {
        events,
        ..case.clone()
    }
}

impl Case {
    /// The case as text, one event a line.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# agent-relay-sim regression case (replayed by tests/sim_regressions.rs)"
        );
        let _ = writeln!(s, "seed {:#018x}", self.seed);
        let _ = writeln!(s, "invariant {}", self.invariant);
        let _ = writeln!(
            s,
            "config protocol={} max_clients={} handshake={} clients={} correlations={} clock={} soft={} hard={} global={} grace={} to_guest={} window={} quarantine={} exec_log={} incarnation={:#x}",
            c.protocol,
            c.legacy.max_clients,
            match c.legacy.handshake {
                HandshakeForm::Offset => "offset",
                HandshakeForm::Bounds => "bounds",
            },
            c.current.clients,
            c.current.max_correlations,
            u8::from(c.current.clock_sync),
            c.client_soft_budget,
            c.client_hard_cap,
            c.global_cap,
            c.grace,
            c.client_to_guest_cap,
            c.guest_window,
            c.quarantine,
            u8::from(c.exec_log),
            c.current.incarnation_seed
        );
        let _ = writeln!(s, "read_max {}", self.read_max);
        let _ = writeln!(s, "finish {}", u8::from(self.finish));
        for r in &self.events {
            r.event.write_line(r.now, &mut s);
        }
        s
    }

    /// Parses [`Case::to_text`] output.
    pub fn from_text(text: &str) -> Result<Case, String> {
        let mut case = Case {
            seed: 0,
            invariant: Invariant::NoPanic,
            config: Config::legacy(),
            read_max: super::world::READ_MAX,
            finish: false,
            events: Vec::new(),
        };
        let mut invariant = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |e: &dyn std::fmt::Display| format!("line {}: {e}: {line}", n + 1);
            let words: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| parse_num(words.get(i).copied()).map_err(|e| err(&e));
            match words[0] {
                "seed" => case.seed = num(1)?,
                "invariant" => {
                    let name = words.get(1).copied().unwrap_or_default();
                    let found =
                        Invariant::from_name(name).ok_or_else(|| err(&"unknown invariant"))?;
                    invariant = Some(found);
                }
                "read_max" => case.read_max = num(1)? as usize,
                "finish" => case.finish = num(1)? != 0,
                "config" => {
                    for kv in &words[1..] {
                        set_config(&mut case.config, kv).map_err(|e| err(&e))?;
                    }
                }
                _ => {
                    let now = num(0)?;
                    let event = OwnedEvent::parse(&words[1..]).map_err(|e| err(&e))?;
                    case.events.push(Recorded { now, event });
                }
            }
        }
        case.invariant = invariant.ok_or("no `invariant` line")?;
        Ok(case)
    }
}

/// Applies one `key=value` of a `config` line.
fn set_config(c: &mut Config, kv: &str) -> Result<(), String> {
    let (k, v) = kv.split_once('=').ok_or("bad key=value")?;
    let int = || v.parse::<u64>().map_err(|e| e.to_string());
    match k {
        "protocol" => {
            c.protocol = match v {
                "legacy" => Protocol::Legacy,
                "current" => Protocol::Current,
                "auto" => Protocol::Auto,
                _ => return Err("protocol is legacy, current or auto".into()),
            }
        }
        "clients" => c.current.clients = int()? as u32,
        "correlations" => c.current.max_correlations = int()? as usize,
        "clock" => c.current.clock_sync = int()? != 0,
        "max_clients" => c.legacy.max_clients = int()? as u32,
        "handshake" => {
            c.legacy.handshake = if v == "bounds" {
                HandshakeForm::Bounds
            } else {
                HandshakeForm::Offset
            }
        }
        "soft" => c.client_soft_budget = int()? as usize,
        "hard" => c.client_hard_cap = int()? as usize,
        "global" => c.global_cap = int()? as usize,
        "grace" => c.grace = int()?,
        "to_guest" => c.client_to_guest_cap = int()? as usize,
        "window" => c.guest_window = int()? as usize,
        "quarantine" => c.quarantine = int()?,
        "exec_log" => c.exec_log = int()? != 0,
        "incarnation" => c.current.incarnation_seed = parse_num(Some(v))?,
        _ => return Err("unknown config key".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::event::Kind;
    use super::*;

    #[test]
    fn case_text_round_trips_and_names_its_invariant() {
        let case = Case {
            seed: 0x85,
            invariant: Invariant::SessionsEnd,
            config: Config::legacy(),
            read_max: 4096,
            finish: true,
            events: vec![
                Recorded {
                    now: 3,
                    event: OwnedEvent::new(Kind::ClientBytes, 7, 0, vec![0, 1, 0xff]),
                },
                Recorded {
                    now: 9,
                    event: OwnedEvent::new(Kind::Tick, 0, 0, Vec::new()),
                },
            ],
        };
        let text = case.to_text();
        assert!(text.contains("\ninvariant live_sessions_end\n"), "{text}");
        assert_eq!(Case::from_text(&text), Ok(case));
        let unknown = text.replace("live_sessions_end", "live_nonsense");
        assert!(Case::from_text(&unknown).is_err());
        let missing = text.replace("invariant live_sessions_end\n", "");
        assert!(Case::from_text(&missing).is_err());
    }
}
