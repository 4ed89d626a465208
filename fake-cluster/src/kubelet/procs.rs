//! Every process group the fake starts, so a test can check none outlives it and dropping the
//! cluster can kill them all.

use std::collections::BTreeSet;
use std::sync::Mutex;

use rustix::process::{kill_process_group, Pid, Signal};

/// The process groups started by one cluster (each process the fake spawns leads its own group).
#[derive(Debug, Default)]
pub(crate) struct ProcessRegistry {
    groups: Mutex<BTreeSet<u32>>,
}

impl ProcessRegistry {
    pub fn add(&self, pgid: u32) {
        self.groups.lock().unwrap().insert(pgid);
    }

    pub fn all(&self) -> Vec<u32> {
        self.groups.lock().unwrap().iter().copied().collect()
    }

    /// SIGKILLs every group ever started; a group already gone is no error.
    pub fn kill_all(&self) {
        for g in self.all() {
            signal_group(g, Signal::KILL);
        }
    }
}

/// Sends a signal to a process group; a group that no longer exists is ignored.
pub(crate) fn signal_group(pgid: u32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pgid as i32) {
        let _ = kill_process_group(pid, sig);
    }
}

/// The processes (not zombies) still alive in any of these process groups.
pub fn live_processes(groups: &[u32]) -> Vec<u32> {
    let groups: BTreeSet<u32> = groups.iter().copied().collect();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: the fields start after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (
            fields.first(),
            fields.get(2).and_then(|p| p.parse::<u32>().ok()),
        ) else {
            continue;
        };
        if *state != "Z" && *state != "X" && groups.contains(&pgrp) {
            out.push(pid);
        }
    }
    out
}
