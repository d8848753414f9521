//! Where a rank computes: `device: auto | cpu | cuda | cuda:N` in a training
//! or evaluation stage's configuration.
//!
//! `auto` (the default) puts each rank on its node-local GPU when libtorch
//! sees one, else on the CPU. The node-local rank comes from the launcher
//! (`OMPI_COMM_WORLD_LOCAL_RANK` under Open MPI's mpirun, `SLURM_LOCALID`
//! under srun, `MPI_LOCALRANKID` under MPICH/Intel MPI's hydra), so ranks
//! on one node spread over its GPUs (local rank modulo the GPU count).
//! Asking for `cuda` where libtorch sees no GPU is an error, never a silent
//! fall back to the CPU.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::Device;

use crate::{Error, Result};

/// The launcher variables that give a process's rank on its node, in the
/// order they are consulted.
pub const LOCAL_RANK_VARS: [&str; 3] = [
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "SLURM_LOCALID",
    "MPI_LOCALRANKID",
];

/// A configured device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The rank's local GPU if there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A GPU: the given ordinal, or the rank's local one.
    Cuda(Option<usize>),
}

impl DeviceSpec {
    /// The device for a process with node-local rank `local_rank` on a node
    /// where libtorch sees `gpus` CUDA devices.
    pub fn choose(self, local_rank: usize, gpus: usize) -> Result<Device> {
        let no_gpu = || {
            Error::Config(format!(
                "device `{self}` asked for, but libtorch sees no CUDA device on this machine \
                 (use `device: cpu` or `auto`, or run where a GPU and its driver are)"
            ))
        };
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Auto if gpus == 0 => Ok(Device::Cpu),
            DeviceSpec::Auto | DeviceSpec::Cuda(None) if gpus > 0 => {
                Ok(Device::Cuda(local_rank % gpus))
            }
            DeviceSpec::Cuda(Some(i)) if i < gpus => Ok(Device::Cuda(i)),
            DeviceSpec::Cuda(Some(i)) if gpus > 0 => Err(Error::Config(format!(
                "device `cuda:{i}` asked for, but libtorch sees {gpus} CUDA device(s) (0..{})",
                gpus - 1
            ))),
            DeviceSpec::Auto | DeviceSpec::Cuda(_) => Err(no_gpu()),
        }
    }

    /// The device for this process: its node-local rank from the launcher's
    /// variables (0 when started alone), the GPUs libtorch sees.
    pub fn resolve(self) -> Result<Device> {
        let local = local_rank(|k| std::env::var(k).ok()).unwrap_or(0);
        let gpus = if self == DeviceSpec::Cpu {
            0
        } else {
            crate::cuda::device_count()
        };
        self.choose(local, gpus)
    }
}

/// The node-local rank the launcher gave this process, read through `var`
/// (the environment, or a test's table).
pub fn local_rank(var: impl Fn(&str) -> Option<String>) -> Option<usize> {
    LOCAL_RANK_VARS
        .iter()
        .find_map(|k| var(k).and_then(|v| v.trim().parse().ok()))
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(None) => f.write_str("cuda"),
            DeviceSpec::Cuda(Some(i)) => write!(f, "cuda:{i}"),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(None)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|n| DeviceSpec::Cuda(Some(n)))
                .ok_or_else(|| format!("expected auto, cpu, cuda or cuda:N, found `{s}`")),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_rank_comes_from_the_launcher_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(local_rank(env(&[])), None);
        assert_eq!(
            local_rank(env(&[("OMPI_COMM_WORLD_LOCAL_RANK", "3")])),
            Some(3)
        );
        assert_eq!(local_rank(env(&[("SLURM_LOCALID", "2")])), Some(2));
        assert_eq!(local_rank(env(&[("MPI_LOCALRANKID", "1")])), Some(1));
        // Open MPI's own variable wins over an outer Slurm allocation's.
        assert_eq!(
            local_rank(env(&[
                ("SLURM_LOCALID", "0"),
                ("OMPI_COMM_WORLD_LOCAL_RANK", "5")
            ])),
            Some(5)
        );
        // A value that is not a number is passed over.
        assert_eq!(
            local_rank(env(&[
                ("OMPI_COMM_WORLD_LOCAL_RANK", "x"),
                ("SLURM_LOCALID", "4")
            ])),
            Some(4)
        );
    }

    #[test]
    fn ranks_spread_over_their_node_s_gpus_and_cpus_stay_cpus() {
        let auto = DeviceSpec::Auto;
        assert_eq!(auto.choose(0, 0).unwrap(), Device::Cpu);
        assert_eq!(auto.choose(5, 0).unwrap(), Device::Cpu);
        assert_eq!(auto.choose(0, 4).unwrap(), Device::Cuda(0));
        assert_eq!(auto.choose(5, 4).unwrap(), Device::Cuda(1));
        assert_eq!(DeviceSpec::Cpu.choose(1, 8).unwrap(), Device::Cpu);
        assert_eq!(
            DeviceSpec::Cuda(None).choose(3, 2).unwrap(),
            Device::Cuda(1)
        );
        assert_eq!(
            DeviceSpec::Cuda(Some(1)).choose(0, 2).unwrap(),
            Device::Cuda(1)
        );
        let e = DeviceSpec::Cuda(None).choose(0, 0).unwrap_err().to_string();
        assert!(e.contains("no CUDA device"), "{e}");
        let e = DeviceSpec::Cuda(Some(2))
            .choose(0, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sees 2 CUDA device(s)"), "{e}");
    }

    #[test]
    fn specs_read_and_print_as_written() {
        for s in ["auto", "cpu", "cuda", "cuda:3"] {
            let d: DeviceSpec = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            let json = serde_json::to_value(d).unwrap();
            assert_eq!(serde_json::from_value::<DeviceSpec>(json).unwrap(), d);
        }
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }
}
