//! What the init process and the agent child tell the supervisor before the
//! agent's program starts ("fork and report").
//!
//! The channel is a pipe whose write end is close-on-exec in the agent: the
//! supervisor reads JSON lines until end of file. End of file after an
//! [`Report::Enforced`] line means the exec happened; a [`Report::Failed`]
//! line means the launch was aborted, with the stage and the reason.

use std::io::{BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

/// One message on the report pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "report")]
pub enum Report {
    /// Every layer is in place; the exec follows.
    Enforced(Enforced),
    /// The launch stopped at `stage`; the process exits with `exit_code`.
    Failed {
        stage: String,
        message: String,
        exit_code: i32,
    },
}

/// What was actually enforced on the agent child, as verified from inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforced {
    pub uid: u32,
    pub gid: u32,
    pub no_new_privs: bool,
    pub seccomp: bool,
    pub landlock: LandlockReport,
}

/// What Landlock enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockReport {
    /// The kernel's ABI, 0 when unavailable.
    pub abi: u32,
    /// Rules in the ruleset.
    pub rules: u32,
    /// True when `restrict_self` reported the ruleset fully enforced.
    pub enforced: bool,
    /// Why no Landlock domain is in place (best effort only).
    pub unavailable: Option<String>,
    /// Policy paths that could not be opened (best effort only).
    pub skipped: Vec<SkippedPath>,
}

/// A policy path left out of the ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPath {
    pub path: String,
    pub reason: String,
}

/// The child's end of the report channel: what it enforced, or why it
/// failed (before exec; the supervisor reads until end of file).
#[derive(Debug)]
pub struct Sender(std::fs::File);

impl Sender {
    pub fn new(channel: std::fs::File) -> Sender {
        Sender(channel)
    }

    /// The channel's descriptor (to mark it close-on-exec).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }

    pub fn send(&self, report: &Report) {
        send(&self.0, report);
    }

    /// A failure at `stage` (the launch's exit code).
    pub fn fail(&self, stage: &str, error: &anyhow::Error) {
        self.fail_with(stage, format!("{error:#}"), crate::EXIT_LAUNCH_FAILED);
    }

    /// A failure with a specific exit code (126/127 for exec).
    pub fn fail_with(&self, stage: &str, message: String, exit_code: i32) {
        self.send(&Report::Failed {
            stage: stage.to_owned(),
            message,
            exit_code,
        });
    }
}

/// Writes one report line. Errors are ignored: the reader treats a missing
/// report as a failure of its own kind.
pub fn send(mut out: impl Write, report: &Report) {
    if let Ok(mut line) = serde_json::to_vec(report) {
        line.push(b'\n');
        let _ = out.write_all(&line);
    }
}

/// Reads reports until end of file. Lines that do not parse are returned as
/// failures so that nothing the child said is lost.
pub fn receive(input: impl Read) -> Vec<Report> {
    BufReader::new(input)
        .lines()
        .map_while(Result::ok)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(&line).unwrap_or(Report::Failed {
                stage: "report".into(),
                message: format!("unreadable report from the sandbox: {line}"),
                exit_code: crate::EXIT_LAUNCH_FAILED,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_through_a_pipe_format() {
        let reports = vec![
            Report::Enforced(Enforced {
                uid: 990,
                gid: 990,
                no_new_privs: true,
                seccomp: true,
                landlock: LandlockReport {
                    abi: 7,
                    rules: 9,
                    enforced: true,
                    unavailable: None,
                    skipped: vec![SkippedPath {
                        path: "/app".into(),
                        reason: "No such file or directory".into(),
                    }],
                },
            }),
            Report::Failed {
                stage: "exec".into(),
                message: "nope: command not found".into(),
                exit_code: 127,
            },
        ];
        let mut buffer = Vec::new();
        for report in &reports {
            send(&mut buffer, report);
        }
        buffer.extend_from_slice(b"garbage\n");
        let received = receive(buffer.as_slice());
        assert_eq!(received[..2], reports[..]);
        assert!(matches!(&received[2], Report::Failed { stage, .. } if stage == "report"));
    }
}
