//! Reads and writes of /proc/sys, in the network namespace vmnetd runs in.

use std::io;
use std::path::PathBuf;

/// The /proc/sys tree (a directory of files named like `net/ipv4/ip_forward`).
#[derive(Debug, Clone)]
pub struct Sysctls {
    root: PathBuf,
}

/// A failed sysctl access, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("sysctl {key}: {source}")]
pub struct SysctlError {
    pub key: String,
    #[source]
    pub source: io::Error,
}

impl SysctlError {
    /// The key's interface is gone (or the key never existed).
    pub fn is_missing(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
}

impl Default for Sysctls {
    fn default() -> Self {
        Self { root: PathBuf::from("/proc/sys") }
    }
}

impl Sysctls {
    /// A tree other than /proc/sys (for tests).
    #[cfg(test)]
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }
    pub fn read(&self, key: &str) -> Result<String, SysctlError> {
        std::fs::read_to_string(self.root.join(key))
            .map(|value| value.trim().to_owned())
            .map_err(|source| SysctlError { key: key.into(), source })
    }

    /// Whether `path` (a key or a directory of keys, like `net/ipv6`) exists.
    pub fn exists(&self, path: &str) -> bool {
        self.root.join(path).exists()
    }

    /// Writes `value` unless the key already holds it. Returns whether it wrote.
    pub fn ensure(&self, key: &str, value: &str) -> Result<bool, SysctlError> {
        if self.read(key)? == value {
            return Ok(false);
        }
        std::fs::write(self.root.join(key), value)
            .map(|()| true)
            .map_err(|source| SysctlError { key: key.into(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_before_it_writes() {
        let dir = std::env::temp_dir().join(format!("vmnet-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net/ipv4")).unwrap();
        let sysctls = Sysctls { root: dir.clone() };
        std::fs::write(dir.join("net/ipv4/ip_forward"), "0\n").unwrap();
        assert_eq!(sysctls.read("net/ipv4/ip_forward").unwrap(), "0");
        assert!(sysctls.ensure("net/ipv4/ip_forward", "1").unwrap());
        assert!(!sysctls.ensure("net/ipv4/ip_forward", "1").unwrap());
        assert!(sysctls.read("net/ipv4/conf/gone/proxy_arp").unwrap_err().is_missing());
        assert!(sysctls.exists("net/ipv4") && !sysctls.exists("net/ipv6"), "a host without IPv6");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
