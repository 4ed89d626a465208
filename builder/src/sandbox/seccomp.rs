//! The seccomp filter every RUN step gets: the system calls Docker's default profile refuses to
//! a container without extra capabilities are refused here too (EPERM), `clone3` answers ENOSYS
//! (so libc falls back to `clone`, whose namespace flags a filter can see) and `clone` with a
//! new-namespace flag is refused.
//!
//! The programs are compiled by `seccompiler` (rust-vmm's, the one Firecracker ships): pure Rust,
//! no C libseccomp to build or link, maintained, and it turns rules into BPF so kiln carries no
//! hand-written BPF. They are compiled in the parent; the child only hands them to the kernel.
//!
//! Docker's profile lists what is allowed and refuses the rest; this one lists what Docker refuses
//! and allows the rest, so a system call newer than the list keeps working as it does outside
//! (an allow list answering EPERM to a new call breaks libc fallbacks that expect ENOSYS). The
//! x32 numbers of the refused calls are refused too, so that ABI is no way around the list.
//! seccompiler's architecture check kills (SIGSYS) a process making a system call of another
//! ABI: a 32-bit x86 or arm program run natively in a step dies, where Docker's profile, which
//! carries those ABIs' numbers too, would filter it like a 64-bit one.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Why the filter could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("compiling the seccomp filter")]
pub struct SeccompError(#[from] seccompiler::Error);

/// The compiled filter and how the child installs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    /// Installed in order; the kernel runs all of them and the strictest answer wins.
    pub programs: Vec<BpfProgram>,
    /// Set `no_new_privs` first: only where the process lacks CAP_SYS_ADMIN, which a filter
    /// needs otherwise (setuid programs in the step then do not gain privileges).
    pub no_new_privs: bool,
}

/// Calls Docker's default profile refuses without the capability that would allow them
/// (CAP_SYS_ADMIN, SYS_MODULE, SYS_BOOT, SYS_TIME, SYS_PTRACE, SYS_NICE, SYSLOG, ...), none
/// of which a step has, plus those it refuses to everyone (keys, io_uring, userfaultfd).
const REFUSED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_fanotify_init,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_migrate_pages,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pidfd_getfd,
    libc::SYS_pivot_root,
    libc::SYS_process_madvise,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_set_mempolicy_home_node,
    libc::SYS_setdomainname,
    libc::SYS_sethostname,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
];

/// Legacy and x86-only calls Docker's profile refuses.
#[cfg(target_arch = "x86_64")]
const REFUSED_ARCH: &[libc::c_long] = &[
    libc::SYS__sysctl,
    libc::SYS_afs_syscall,
    libc::SYS_getpmsg,
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_putpmsg,
    libc::SYS_security,
    libc::SYS_sysfs,
    libc::SYS_tuxcall,
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_vserver,
];
#[cfg(not(target_arch = "x86_64"))]
const REFUSED_ARCH: &[libc::c_long] = &[];

/// `clone` flags that make a namespace (Docker's mask 0x7E020000).
const NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// `personality` values Docker allows (Linux, its 32-bit form, and the query).
const PERSONALITIES: [u64; 5] = [0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The address family Docker refuses (`AF_VSOCK`: host-guest sockets).
const AF_VSOCK: u64 = 40;

/// The bit x32 system calls carry on x86_64.
#[cfg(target_arch = "x86_64")]
const X32_BIT: libc::c_long = 0x4000_0000;

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, seccompiler::Error> {
    Ok(SeccompRule::new(conditions)?)
}

fn arg0(op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, seccompiler::Error> {
    Ok(SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        op,
        value,
    )?)
}

fn arch() -> Result<TargetArch, seccompiler::Error> {
    Ok(TargetArch::try_from(std::env::consts::ARCH)?)
}

/// The EPERM program: each refused call (always, or when its rules match).
fn refusals() -> Result<BpfProgram, seccompiler::Error> {
    // Numbers are `c_long`: the `i64` seccompiler takes on the 64-bit machines it supports.
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = REFUSED
        .iter()
        .chain(REFUSED_ARCH)
        .map(|nr| (*nr, Vec::new()))
        .collect();
    let clone = NAMESPACE_FLAGS
        .iter()
        .map(|f| rule(vec![arg0(SeccompCmpOp::MaskedEq(*f as u64), *f as u64)?]))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_clone, clone);
    let odd_personality = PERSONALITIES
        .iter()
        .map(|p| arg0(SeccompCmpOp::Ne, *p))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_personality, vec![rule(odd_personality)?]);
    rules.insert(
        libc::SYS_socket,
        vec![rule(vec![arg0(SeccompCmpOp::Eq, AF_VSOCK)?])?],
    );
    compile(rules, libc::EPERM)
}

/// The ENOSYS program: `clone3` passes its flags in memory a filter cannot read, so it is
/// made to look absent, as Docker does.
fn no_clone3() -> Result<BpfProgram, seccompiler::Error> {
    compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
    )
}

/// A program answering `errno` to the calls `rules` match (by their x32 numbers too) and
/// allowing the rest.
fn compile(
    mut rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
) -> Result<BpfProgram, seccompiler::Error> {
    #[cfg(target_arch = "x86_64")]
    {
        let x32: Vec<(i64, Vec<SeccompRule>)> = rules
            .iter()
            .map(|(nr, r)| (nr | X32_BIT, r.clone()))
            .collect();
        rules.extend(x32);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch()?,
    )?;
    Ok(filter.try_into()?)
}

impl Filter {
    /// Docker's default profile, as far as a step without extra capabilities sees it.
    pub(crate) fn docker_default(no_new_privs: bool) -> Result<Filter, SeccompError> {
        // The programs depend on nothing of the step: compiled once per process, not per RUN.
        static PROGRAMS: std::sync::OnceLock<Vec<BpfProgram>> = std::sync::OnceLock::new();
        let programs = match PROGRAMS.get() {
            Some(p) => p.clone(),
            None => {
                let p = vec![no_clone3()?, refusals()?];
                PROGRAMS.get_or_init(|| p).clone()
            }
        };
        Ok(Filter {
            programs,
            no_new_privs,
        })
    }
}

/// Installs `filter` on the calling process. Runs in the cloned child: no allocation.
#[allow(unsafe_code)]
pub(crate) fn install(filter: &Filter) -> Result<(), rustix::io::Errno> {
    if filter.no_new_privs {
        rustix::thread::set_no_new_privs(true)?;
    }
    for program in &filter.programs {
        let fprog = libc::sock_fprog {
            len: program.len() as libc::c_ushort,
            // seccompiler's `sock_filter` is `#[repr(C)]` with the kernel's layout.
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `fprog` and the `len` instructions it
        // points to, all alive for the call; it does not keep the pointers.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_uint,
                &fprog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(super::child::last_errno());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_both_programs_for_this_machine() {
        let f = Filter::docker_default(false).unwrap();
        assert_eq!(f.programs.len(), 2);
        assert!(f.programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
        assert!(f.programs[1].len() > f.programs[0].len());
    }
}
