//! Which cores each side of the measurement runs on. On a machine with
//! enough of them, the upstream, the proxy under test and the load generator
//! each get their own, as `../shared/bench/proxy-bench.sh` splits them
//! (upstream 0-3, proxy 4-7, load 8-15): then a proxy's figures are its own,
//! not what is left over from the generator and the mock. Pinning is done
//! with `taskset`, which every Linux machine has (util-linux).

use std::path::Path;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

/// The CPU lists (`taskset -c` syntax) of the three sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cores {
    /// The mock upstream.
    pub upstream: String,
    /// The proxy under test (nginx, meridian, the baseline build).
    pub proxy: String,
    /// This process: the load generator.
    pub load: String,
}

/// The fewest CPUs the default split needs.
const SPLIT_CPUS: usize = 16;

impl Cores {
    /// `auto` (the shared split on 16 CPUs or more, none below), `none`, or
    /// `UPSTREAM:PROXY:LOAD` as three CPU lists, e.g. `0-3:4-7:8-15`.
    pub fn parse(text: &str, nproc: usize) -> Result<Option<Cores>> {
        match text {
            "none" => Ok(None),
            "auto" if nproc >= SPLIT_CPUS => Ok(Some(Cores {
                upstream: "0-3".into(),
                proxy: "4-7".into(),
                load: "8-15".into(),
            })),
            "auto" => Ok(None),
            _ => {
                let lists: Vec<&str> = text.split(':').collect();
                let [upstream, proxy, load] = lists[..] else {
                    bail!("--cores: {text:?} is not auto, none or UPSTREAM:PROXY:LOAD");
                };
                for list in [upstream, proxy, load] {
                    count(list).with_context(|| format!("--cores: {text:?}"))?;
                }
                Ok(Some(Cores {
                    upstream: upstream.into(),
                    proxy: proxy.into(),
                    load: load.into(),
                }))
            }
        }
    }

    /// The CPUs given to the proxy under test: its worker count.
    pub fn proxy_count(&self) -> usize {
        count(&self.proxy).unwrap_or(1)
    }

    /// For the report.
    pub fn describe(&self) -> String {
        format!(
            "upstream {}, proxy {}, load {}",
            self.upstream, self.proxy, self.load
        )
    }
}

/// The number of CPUs in a list such as `4-7` or `0,2,4-5`.
pub fn count(list: &str) -> Result<usize> {
    let mut total = 0usize;
    for part in list.split(',') {
        let cpu = |s: &str| {
            s.parse::<usize>()
                .with_context(|| format!("{s:?} in {list:?} is not a CPU number"))
        };
        total += match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (cpu(first)?, cpu(last)?);
                if last < first {
                    bail!("{part:?} in {list:?} runs backwards");
                }
                last - first + 1
            }
            None => {
                cpu(part)?;
                1
            }
        };
    }
    Ok(total)
}

/// `program`, run on `cpus` when there are any (`taskset` execs it, so its
/// pid and process group stay the program's own).
pub fn command(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpus).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Pins this process, every thread it has and will start, to `cpus`: done
/// before the load generator's runtime starts its threads.
pub fn pin_self(cpus: &str) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux) to pin the load generator")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_shared_split_needs_sixteen_cpus() {
        let split = Cores::parse("auto", 16).unwrap().unwrap();
        assert_eq!(split.describe(), "upstream 0-3, proxy 4-7, load 8-15");
        assert_eq!(split.proxy_count(), 4);
        assert_eq!(Cores::parse("auto", 2).unwrap(), None);
        assert_eq!(Cores::parse("none", 64).unwrap(), None);
    }

    #[test]
    fn explicit_lists_are_checked() {
        let cores = Cores::parse("0:1:0-1", 2).unwrap().unwrap();
        assert_eq!((cores.proxy.as_str(), cores.proxy_count()), ("1", 1));
        assert_eq!(count("0,2,4-5").unwrap(), 4);
        for bad in ["0-3:4-7", "0:1:2:3", "a:1:2", "3-1:4:5", "0:1:", "0;1:2:3"] {
            assert!(Cores::parse(bad, 16).is_err(), "{bad}");
        }
    }
}
