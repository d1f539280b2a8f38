//! `weft edge check-integrity [--fix]`: runs the controller's data integrity check
//! (`POST /database/check-data-integrity`, or `fix-data-integrity`), waits for it, and
//! prints what it found. Problems left unfixed make the command fail, so a script can
//! act on them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Api, CliError};

/// How long the command waits for the run to end.
const WAIT: Duration = Duration::from_secs(120);

/// Runs the check and prints `[fixed]` or `[not fixed]` before each finding.
pub async fn run(api: &Api, fix: bool) -> Result<(), CliError> {
    let path = if fix {
        "database/fix-data-integrity"
    } else {
        "database/check-data-integrity"
    };
    api.post(path, &json!({})).await?;
    let started = Instant::now();
    let data = loop {
        let v = api.get("database/data-integrity-results").await?;
        if v["data"]["inProgress"] == Value::Bool(false) {
            break v["data"].clone();
        }
        if started.elapsed() > WAIT {
            return Err(CliError::Answer(format!(
                "the check has not ended after {} s; see GET /database/data-integrity-results",
                WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(e) = data["error"].as_str().filter(|e| !e.is_empty()) {
        return Err(CliError::Answer(format!("the check failed: {e}")));
    }
    let results: &[Value] = data["results"].as_array().map_or(&[], Vec::as_slice);
    let mut unfixed = 0;
    for r in results {
        let fixed = r["fixed"] == Value::Bool(true);
        unfixed += usize::from(!fixed);
        let tag = if fixed { "[fixed]" } else { "[not fixed]" };
        println!("{tag} {}", r["description"].as_str().unwrap_or_default());
    }
    if data["tooManyErrors"] == Value::Bool(true) {
        println!("(more problems than the {} listed)", results.len());
    }
    if results.is_empty() {
        println!("no data integrity problem found");
    }
    if unfixed > 0 {
        return Err(CliError::IntegrityProblems(unfixed));
    }
    Ok(())
}
