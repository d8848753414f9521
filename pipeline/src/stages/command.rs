//! The `command` stage: an external program (argv, or a shell line with
//! `shell: true`) with declared inputs, hashed like any other, and declared
//! outputs that must exist afterwards. It makes a Python generator (such
//! as the lalsuite waveform bank) a node of the DAG.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stages::kind::{config, resolved, typed, ConfigError, InputScope, StageContext};
use crate::Error;

fn scalars_as_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items: Vec<Value> = Deserialize::deserialize(d)?;
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(serde::de::Error::custom(format!(
                "argv items must be strings, numbers or booleans, found {other}"
            ))),
        })
        .collect()
}

/// Configuration of a `command` stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandConfig {
    /// Program and arguments; `{out}` in an argument becomes the stage's output
    /// directory. Numbers and booleans (e.g. a whole `${params.n}`) are passed as
    /// their text.
    #[serde(deserialize_with = "scalars_as_strings")]
    argv: Vec<String>,
    /// Run `argv` (one string) through `sh -c`.
    #[serde(default)]
    shell: bool,
    /// Files or directories the command reads (hashed into the fingerprint).
    #[serde(default)]
    inputs: Vec<PathBuf>,
    /// Output name -> path relative to the output directory; each must exist afterwards.
    #[serde(default)]
    outputs: BTreeMap<String, PathBuf>,
    /// Extra environment variables.
    #[serde(default)]
    env: BTreeMap<String, String>,
}

pub(crate) fn resolve_command(v: &Value) -> Result<Value, ConfigError> {
    let cfg: CommandConfig = typed(v)?;
    let err = |path: &str, message: String| {
        Err(ConfigError {
            path: path.into(),
            message,
        })
    };
    if cfg.argv.is_empty() || cfg.argv[0].is_empty() {
        return err("argv", "expected a program and its arguments".into());
    }
    if cfg.shell && cfg.argv.len() != 1 {
        return err(
            "argv",
            "with `shell: true`, give the command line as one string".into(),
        );
    }
    check_outputs(&cfg.outputs)?;
    Ok(resolved(&cfg))
}

pub(crate) fn command_inputs(config: &Value, _scope: &InputScope<'_>) -> Vec<PathBuf> {
    serde_json::from_value::<CommandConfig>(config.clone())
        .map_or_else(|_| Vec::new(), |c| c.inputs)
}

pub(crate) fn run_command(ctx: &StageContext<'_>) -> Result<(), Error> {
    let cfg: CommandConfig = config(ctx)?;
    let out_dir = ctx.out.to_string_lossy();
    let args: Vec<String> = cfg
        .argv
        .iter()
        .map(|a| a.replace("{out}", &out_dir))
        .collect();
    let mut cmd = if cfg.shell {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(&args[0]);
        c
    } else {
        let mut c = std::process::Command::new(&args[0]);
        c.args(&args[1..]);
        c
    };
    cmd.envs(&cfg.env);
    execute(ctx, cmd, &args, &cfg.outputs)
}

/// Runs `cmd` (its words `args`, for messages) for the stage: stdout and
/// stderr into `stdout.log` and `stderr.log` of its output directory, the
/// last lines of stderr in the error when it fails; then checks that every
/// declared output (name -> path in the output directory) exists.
pub(crate) fn execute(
    ctx: &StageContext<'_>,
    mut cmd: std::process::Command,
    args: &[String],
    outputs: &BTreeMap<String, PathBuf>,
) -> Result<(), Error> {
    let file = |name: &str| {
        let p = ctx.out.join(name);
        std::fs::File::create(&p).map_err(Error::io("failed to create", &p))
    };
    cmd.env("PIPELINE_OUT", ctx.out)
        .env("PIPELINE_SEED", ctx.seed.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(file("stdout.log")?)
        .stderr(file("stderr.log")?);
    tracing::debug!("{}: {:?}", ctx.name, args);
    let status = cmd.status().map_err(|e| Error::Stage {
        stage: ctx.name.to_string(),
        message: format!("cannot start `{}`: {e}", args[0]),
    })?;
    if !status.success() {
        let stderr = std::fs::read_to_string(ctx.out.join("stderr.log")).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::Stage {
            stage: ctx.name.to_string(),
            message: format!(
                "`{}` exited with {status}; last lines of stderr:\n{}",
                args.join(" "),
                tail.join("\n")
            ),
        });
    }
    for (name, p) in outputs {
        if !ctx.out.join(p).exists() {
            return Err(Error::Stage {
                stage: ctx.name.to_string(),
                message: format!(
                    "the command did not write its declared output `{name}` ({})",
                    p.display()
                ),
            });
        }
    }
    Ok(())
}

/// Checks that each declared output is a relative path inside the stage's
/// output directory.
pub(crate) fn check_outputs(outputs: &BTreeMap<String, PathBuf>) -> Result<(), ConfigError> {
    for (name, p) in outputs {
        let escapes = p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        if escapes || p.as_os_str().is_empty() {
            return Err(ConfigError {
                path: format!("outputs.{name}"),
                message: format!(
                    "`{}` must be a relative path inside the stage's output directory",
                    p.display()
                ),
            });
        }
    }
    Ok(())
}
