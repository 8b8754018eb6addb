//! `SandboxLogs`: a sandbox's log lines from two sources, merged by time:
//! `sandbox` (the egress decisions its supervisor pushed, from
//! `events.jsonl`) and `gateway` (its lifecycle and policy events, from
//! the store). Filters: since a time, by source, by minimum level; then the
//! latest `lines`, then (with `follow`) new lines as they come, until the
//! client goes away.

use tonic::Status;

use openshell_core::time::Utc;
use openshell_proto::v1 as pb;

use super::{Api, status};

/// How often a followed log looks for more.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(100);

pub type LogStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::LogLine, Status>> + Send>>;

const LEVELS: [&str; 4] = ["error", "warn", "info", "debug"];

fn rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// Which lines a request wants.
#[derive(Debug, Clone)]
struct Filter {
    sandbox: bool,
    gateway: bool,
    /// RFC 3339 with milliseconds, as every line's `time` is written.
    since: Option<String>,
    max_rank: usize,
}

fn rfc3339(ms: i64) -> String {
    Utc::from_unix(ms.div_euclid(1000)).rfc3339_millis(ms.rem_euclid(1000) as u32)
}

impl Filter {
    fn new(request: &pb::SandboxLogsRequest) -> Result<Filter, Status> {
        for source in &request.sources {
            if !["sandbox", "gateway"].contains(&source.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "unknown log source '{source}' (expected sandbox or gateway)"
                )));
            }
        }
        let wants = |s: &str| request.sources.is_empty() || request.sources.iter().any(|x| x == s);
        let max_rank = match request.min_level.as_str() {
            "" => LEVELS.len() - 1,
            level => rank(level).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "unknown level '{level}' (expected error, warn, info or debug)"
                ))
            })?,
        };
        Ok(Filter {
            sandbox: wants("sandbox"),
            gateway: wants("gateway"),
            since: (request.since_ms > 0).then(|| rfc3339(request.since_ms)),
            max_rank,
        })
    }

    fn keeps(&self, time: &str, level: &str) -> bool {
        self.since.as_deref().is_none_or(|since| time >= since)
            && rank(level).is_some_and(|r| r <= self.max_rank)
    }
}

/// A decision event as a line: (time, line).
fn decision(json: &str) -> (String, pb::LogLine) {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let level = if value["decision"] == "deny" {
        "warn"
    } else {
        "info"
    };
    (
        value["time"].as_str().unwrap_or_default().to_owned(),
        pb::LogLine {
            source: "sandbox".to_owned(),
            json: json.to_owned(),
            level: level.to_owned(),
        },
    )
}

/// A lifecycle event as a line: (time, line).
fn lifecycle(at_ms: i64, message: &str) -> (String, pb::LogLine) {
    let time = rfc3339(at_ms);
    let level = if message.contains("failed") || message.contains("Error") {
        "warn"
    } else {
        "info"
    };
    let json = serde_json::json!({
        "time": time,
        "source": "gateway",
        "level": level,
        "message": message,
    });
    (
        time,
        pb::LogLine {
            source: "gateway".to_owned(),
            json: json.to_string(),
            level: level.to_owned(),
        },
    )
}

/// The file's text from byte `offset` on (empty when unreadable).
async fn read_from(path: &std::path::Path, offset: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return String::new();
    };
    if file
        .seek(std::io::SeekFrom::Start(offset as u64))
        .await
        .is_err()
    {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Where a followed log has got to.
#[derive(Debug, Default)]
struct Cursor {
    offset: usize,
    event_id: i64,
}

impl Api {
    /// The lines after `cursor`, filtered and in time order.
    async fn new_lines(
        &self,
        sandbox_id: &str,
        filter: &Filter,
        cursor: &mut Cursor,
    ) -> Result<Vec<pb::LogLine>, Status> {
        let mut lines: Vec<(String, pb::LogLine)> = Vec::new();
        if filter.gateway {
            let events = self
                .store
                .events(sandbox_id, cursor.event_id, 0)
                .await
                .map_err(status)?;
            for (id, at_ms, message) in events {
                cursor.event_id = id;
                lines.push(lifecycle(at_ms, &message));
            }
        }
        if filter.sandbox
            && let Some(path) = self.events_log(sandbox_id)
        {
            // Only what was appended since the last read, and only whole
            // lines: a partial last line is read again next time.
            let new = read_from(&path, cursor.offset).await;
            let complete = new.rfind('\n').map_or(0, |i| i + 1);
            lines.extend(new[..complete].lines().map(decision));
            cursor.offset += complete;
        }
        lines.retain(|(time, line)| filter.keeps(time, &line.level));
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(lines.into_iter().map(|(_, line)| line).collect())
    }

    pub(super) async fn stream_logs(
        &self,
        workspace: &str,
        request: pb::SandboxLogsRequest,
    ) -> Result<LogStream, Status> {
        let sandbox = self.existing(workspace, &request.name).await?;
        let filter = Filter::new(&request)?;
        let mut cursor = Cursor::default();
        let first = self.new_lines(&sandbox.id, &filter, &mut cursor).await?;
        let skip = match request.lines {
            0 => 0,
            n => first.len().saturating_sub(n as usize),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let api = self.clone();
        tokio::spawn(async move {
            for line in first.into_iter().skip(skip) {
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            // Until the client goes away (a quiet log would otherwise keep
            // this task polling forever).
            while request.follow && !tx.is_closed() {
                tokio::time::sleep(FOLLOW_POLL).await;
                let lines = match api.new_lines(&sandbox.id, &filter, &mut cursor).await {
                    Ok(lines) => lines,
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                };
                for line in lines {
                    if tx.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_source_level_and_time() {
        let request = |sources: &[&str], level: &str, since_ms: i64| pb::SandboxLogsRequest {
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            min_level: level.to_owned(),
            since_ms,
            ..Default::default()
        };
        let all = Filter::new(&request(&[], "", 0)).unwrap();
        assert!(all.sandbox && all.gateway);
        assert!(all.keeps("2026-01-01T00:00:00.000Z", "debug"));
        let warn = Filter::new(&request(&["gateway"], "warn", 0)).unwrap();
        assert!(!warn.sandbox && warn.gateway);
        assert!(warn.keeps("x", "error") && warn.keeps("x", "warn"));
        assert!(!warn.keeps("x", "info"));
        // 2026-11-25T10:00:00.000Z
        let since = Filter::new(&request(&[], "", 1_795_600_800_000)).unwrap();
        assert_eq!(since.since.as_deref(), Some("2026-11-25T10:00:00.000Z"));
        assert!(since.keeps("2026-11-25T10:00:00.000Z", "info"));
        assert!(!since.keeps("2026-11-25T09:59:59.999Z", "info"));
        assert!(Filter::new(&request(&["kernel"], "", 0)).is_err());
        assert!(Filter::new(&request(&[], "loud", 0)).is_err());
        assert_eq!(
            decision(r#"{"time":"t","decision":"deny"}"#).1.level,
            "warn"
        );
        assert_eq!(
            lifecycle(0, "policy version 3 failed to load").1.level,
            "warn"
        );
    }
}
