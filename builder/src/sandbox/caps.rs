//! The capabilities a RUN step keeps: Docker's default set without `NET_RAW` (as Podman gives
//! it), in every set the kernel has (bounding, permitted, effective, inheritable, ambient).
//!
//! Dropping from the bounding set only limits what a later exec can gain; a step running as root
//! keeps its permitted and effective sets through `setresuid(0, ..)`, and capabilities left in the
//! inheritable or ambient set survive exec. So the child drops the bounding set first, then,
//! after the seccomp filter (which needs CAP_SYS_ADMIN to go in without `no_new_privs`) and the id
//! change, limits the others.

use super::child::last_errno;
use rustix::io::Errno;
use rustix::thread::CapabilitySet;

/// Docker's default capabilities without `NET_RAW` (bit numbers): CHOWN, DAC_OVERRIDE, FOWNER,
/// FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, MKNOD, AUDIT_WRITE,
/// SETFCAP.
pub(crate) const STEP_CAPS: [u32; 13] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 27, 29, 31];

fn step_mask() -> u64 {
    STEP_CAPS.iter().fold(0, |m, c| m | 1 << c)
}

/// Drops everything but [`STEP_CAPS`] from the bounding set and empties the ambient set.
#[allow(unsafe_code)]
pub(crate) fn drop_bounding() -> Result<(), Errno> {
    for cap in 0..64u32 {
        if STEP_CAPS.contains(&cap) {
            continue;
        }
        // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes integers only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 {
            let e = last_errno();
            // EINVAL: past the last capability this kernel knows.
            if e == Errno::INVAL {
                break;
            }
            return Err(e);
        }
    }
    match rustix::thread::clear_ambient_capability_set() {
        // EINVAL: a kernel before ambient capabilities (4.3).
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Limits the permitted and effective sets to [`STEP_CAPS`] and empties the inheritable set.
pub(crate) fn limit() -> Result<(), Errno> {
    let mut sets = rustix::thread::capabilities(None)?;
    let keep = CapabilitySet::from_bits_retain(step_mask());
    sets.effective &= keep;
    sets.permitted &= keep;
    sets.inheritable = CapabilitySet::empty();
    rustix::thread::set_capabilities(None, sets)
}

/// Whether the calling thread (the one that clones the step) has `cap` in its effective set:
/// `CapabilitySet::SETPCAP` to drop from the bounding set, `SYS_ADMIN` to install a seccomp
/// filter without `no_new_privs`.
pub(crate) fn effective(cap: CapabilitySet) -> bool {
    rustix::thread::capabilities(None).is_ok_and(|s| s.effective.contains(cap))
}

/// Whether the calling process already runs under a seccomp filter (a container's).
pub(crate) fn filtered() -> bool {
    status_field("Seccomp").is_some_and(|v| v == "2")
}

/// A field of `/proc/self/status` (`Seccomp`, `NoNewPrivs`).
pub(crate) fn status_field(name: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_set_is_dockers_without_net_raw() {
        // Docker's default bounding set is 0xa80425fb; NET_RAW is bit 13.
        assert_eq!(step_mask(), 0xa804_25fb & !(1 << 13));
    }
}
