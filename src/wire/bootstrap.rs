//! `core.bootstrap`: the first frame a 0.7.13 guest agent reads (id 0, flags
//! 0), with the sandbox's start-up configuration. In microsandbox the runtime
//! writes it into the console before the VM starts; a relay that owns the
//! guest channel alone sends it first (`CurrentSettings::bootstrap`).
//!
//! The payload mirrors 0.7.13's `GuestBootstrap` field for field, with the
//! same serde shape, so the same JSON a 0.7.13 runtime would serialize reads
//! here and encodes to the CBOR agentd decodes. Unknown fields are refused
//! (a misspelt key is a mistake to report, not to drop).

use core::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::payload::{ExecLimits, ExecRlimit, build_frame_v};
use super::{CURRENT_VERSION, Frame, MsgType};

/// The guest's start-up configuration (0.7.13 `GuestBootstrap`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestBootstrap {
    /// Wait for the host's acknowledgement of an init failure forever.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init_failure_ack: bool,
    /// The root filesystem's block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_root: Option<BootstrapBlockRoot>,
    /// Directory shares to mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dir_mounts: Vec<BootstrapDirMount>,
    /// Single-file shares to mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_mounts: Vec<BootstrapFileMount>,
    /// Block devices to mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_mounts: Vec<BootstrapDiskMount>,
    /// tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs_mounts: Vec<BootstrapTmpfsMount>,
    /// The guest's hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// A name for the host, in the guest's hosts file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_alias: Option<String>,
    /// The guest's network interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<BootstrapNetwork>,
    /// Resource limits for every process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<ExecRlimit>,
    /// The default user (`name`, `uid` or `uid:gid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The default working directory of executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cwd: Option<String>,
    /// Environment every execution gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_env: Vec<BootstrapEnvVar>,
    /// The sandbox's security profile.
    #[serde(default)]
    pub security_profile: BootstrapSecurityProfile,
    /// A foreign init to hand PID 1 to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_init: Option<BootstrapHandoffInit>,
    /// The execution policy the guest enforces and announces in its ready
    /// (0.7.13's launcher always sets the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_limits: Option<ExecLimits>,
}

/// The root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BootstrapBlockRoot {
    /// A disk image.
    DiskImage {
        /// Its device.
        device: String,
        /// Its filesystem type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fstype: Option<String>,
    },
    /// An OCI image as erofs with a writable upper layer.
    OciErofs {
        /// The erofs device.
        lower: String,
        /// The upper layer.
        upper: BootstrapBlockRootUpper,
    },
}

/// The writable upper layer of an erofs root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BootstrapBlockRootUpper {
    /// A block device.
    Device {
        /// Its device.
        device: String,
        /// Its filesystem type.
        fstype: String,
    },
    /// A tmpfs.
    Tmpfs {
        /// Its size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_mib: Option<u32>,
    },
}

/// Mount flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapMountFlags {
    /// Read-only.
    #[serde(default)]
    pub readonly: bool,
    /// No execution.
    #[serde(default)]
    pub noexec: bool,
    /// No set-id bits.
    #[serde(default)]
    pub nosuid: bool,
    /// No device files.
    #[serde(default)]
    pub nodev: bool,
}

/// A directory share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapDirMount {
    /// The share's tag.
    pub tag: String,
    /// Where it is mounted.
    pub guest_path: String,
    /// Its flags.
    #[serde(default)]
    pub flags: BootstrapMountFlags,
}

/// A single-file share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapFileMount {
    /// The share's tag.
    pub tag: String,
    /// The file inside the share.
    pub filename: String,
    /// Where it is mounted.
    pub guest_path: String,
    /// Its flags.
    #[serde(default)]
    pub flags: BootstrapMountFlags,
}

/// A block device mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapDiskMount {
    /// The disk's id.
    pub id: String,
    /// Where it is mounted.
    pub guest_path: String,
    /// Its filesystem type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    /// Its flags.
    #[serde(default)]
    pub flags: BootstrapMountFlags,
}

/// A tmpfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapTmpfsMount {
    /// Where it is mounted.
    pub path: String,
    /// Its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mib: Option<u32>,
    /// Its mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Its flags.
    #[serde(default)]
    pub flags: BootstrapMountFlags,
}

/// The guest's network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapNetwork {
    /// Its name.
    pub interface: String,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u16,
    /// IPv4 settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<BootstrapIpv4>,
    /// IPv6 settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<BootstrapIpv6>,
}

/// IPv4 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapIpv4 {
    /// The address.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// The resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Ipv4Addr>,
}

/// IPv6 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapIpv6 {
    /// The address.
    pub address: Ipv6Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The gateway.
    pub gateway: Ipv6Addr,
    /// The resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Ipv6Addr>,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapEnvVar {
    /// Its name.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// The security profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootstrapSecurityProfile {
    /// The default.
    #[default]
    Default,
    /// Restricted.
    Restricted,
}

/// A foreign init to hand PID 1 to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapHandoffInit {
    /// Its program.
    pub cmd: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Its working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Its environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<BootstrapEnvVar>,
}

impl GuestBootstrap {
    /// The `core.bootstrap` frame (id 0, flags 0, generation 10).
    pub fn frame(&self) -> Frame {
        build_frame_v(CURRENT_VERSION, MsgType::Bootstrap, 0, self)
    }

    /// What 0.7.13's launcher gives every sandbox: the default execution
    /// policy and nothing else.
    pub fn launcher_default() -> GuestBootstrap {
        GuestBootstrap {
            exec_limits: Some(ExecLimits::default()),
            ..GuestBootstrap::default()
        }
    }
}
