//! Process trees as Mesos's `os::killtree(pid, signal, groups=true, sessions=true)` reaches
//! them, read from `/proc`: a process group, the descendants of its members, and the members
//! of every group or session one of them leads, so that a child that left the group (with
//! `setsid`, say) is still found. One mechanism for the three places that kill trees: the
//! runner's timeout, the executor's kill and the local agent's executor clean-up.
//!
//! Every process comes with its start time (clock ticks since boot), which tells it from a
//! later process that reuses its pid. Off Linux, `/proc` is absent and every listing is empty.

use std::collections::BTreeSet;

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    /// Parent's pid.
    pub ppid: u32,
    /// Process group id.
    pub pgrp: u32,
    /// Session id.
    pub sid: u32,
    /// Start time, in clock ticks since boot.
    pub start: u64,
}

/// Every process but this one and init.
pub fn processes() -> Vec<Proc> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && *pid > 1)
        .filter_map(stat)
        .collect()
}

/// The process `pid` now, if it exists.
pub fn stat(pid: u32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime priority nice num_threads itrealvalue starttime ...": comm
    // may hold spaces and ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// Whether `p` is still the same process (its pid not reused since it was listed).
pub fn same(p: &Proc) -> bool {
    stat(p.pid).is_some_and(|now| now.start == p.start)
}

/// The tree of the group (and session) `leader`: its members and everything tied to them.
/// The leader itself need not be alive: its group or session id is enough.
pub fn tree(leader: u32) -> Vec<Proc> {
    closure(&processes(), BTreeSet::from([leader]), BTreeSet::new())
}

/// Grows `members` with the processes in the groups and sessions of `leaders` and the
/// descendants of members, until nothing changes; a member that leads a group or session
/// makes it a leader. Returns the members found in `procs`.
pub fn closure(
    procs: &[Proc],
    mut leaders: BTreeSet<u32>,
    mut members: BTreeSet<u32>,
) -> Vec<Proc> {
    loop {
        let before = (leaders.len(), members.len());
        for p in procs {
            let tied = members.contains(&p.pid)
                || leaders.contains(&p.sid)
                || leaders.contains(&p.pgrp)
                || members.contains(&p.ppid);
            if tied {
                members.insert(p.pid);
                if p.pid == p.pgrp || p.pid == p.sid {
                    leaders.insert(p.pid);
                }
            }
        }
        if (leaders.len(), members.len()) == before {
            break;
        }
    }
    procs
        .iter()
        .filter(|p| members.contains(&p.pid))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, pgrp: u32, sid: u32) -> Proc {
        Proc {
            pid,
            ppid,
            pgrp,
            sid,
            start: u64::from(pid) * 10,
        }
    }

    #[test]
    fn the_tree_reaches_what_left_the_group_and_what_those_lead() {
        let procs = [
            p(100, 50, 100, 50),   // the leader
            p(101, 100, 100, 50),  // in its group
            p(102, 101, 102, 102), // left with setsid
            p(103, 102, 103, 102), // a group of its own in that session
            p(104, 1, 103, 102),   // re-parented, in 103's group
            p(200, 50, 200, 50),   // a stranger in the parent's session
        ];
        let pids: Vec<u32> = closure(&procs, BTreeSet::from([100]), BTreeSet::new())
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(pids, [100, 101, 102, 103, 104]);
    }

    #[test]
    fn this_process_is_listed_with_its_start_time() {
        let me = stat(std::process::id()).expect("own /proc entry");
        assert!(same(&me));
        assert!(!same(&Proc {
            start: me.start + 1,
            ..me
        }));
        assert!(processes().iter().all(|p| p.pid != me.pid && p.pid > 1));
    }
}
