//! `mesokit status`: a cluster's frameworks and tasks as tables, from the master's v1
//! operator API (GET_STATE).

use std::process::ExitCode;

use mesokit_client::operator::{OperatorClient, OperatorConfig};
use mesokit_proto::v1::{Task, TaskState};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Master URL.
    #[arg(long, default_value = "http://127.0.0.1:5050")]
    master: String,
    /// Also list completed tasks.
    #[arg(long)]
    all: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async {
        let client = OperatorClient::new(OperatorConfig::new(args.master.clone()))
            .map_err(|e| format!("--master {}: {e}", args.master))?;
        let state = client
            .get_state()
            .await
            .map_err(|e| format!("cannot read the state of {}: {e}", args.master))?;
        let frameworks = state.get_frameworks.unwrap_or_default();
        let tasks = state.get_tasks.unwrap_or_default();
        let agents = state.get_agents.unwrap_or_default();
        let live = |id: &str| {
            tasks
                .tasks
                .iter()
                .filter(|t| t.framework_id.value == id)
                .count()
        };
        let mut rows = vec![vec![
            "FRAMEWORK".to_string(),
            "ID".into(),
            "ROLES".into(),
            "ACTIVE".into(),
            "TASKS".into(),
        ]];
        for f in &frameworks.frameworks {
            let info = &f.framework_info;
            let id = info
                .id
                .as_ref()
                .map(|i| i.value.clone())
                .unwrap_or_default();
            // Frameworks that are not MULTI_ROLE still fill the deprecated single role.
            #[allow(deprecated)]
            let roles = if info.roles.is_empty() {
                info.role.clone().unwrap_or_else(|| "*".into())
            } else {
                info.roles.join(",")
            };
            rows.push(vec![
                info.name.clone(),
                id.clone(),
                roles,
                if f.active { "yes" } else { "no" }.into(),
                live(&id).to_string(),
            ]);
        }
        println!(
            "{} agent(s), {} framework(s)",
            agents.agents.len(),
            frameworks.frameworks.len()
        );
        print_table(&rows);
        let mut rows = vec![vec![
            "TASK".to_string(),
            "NAME".into(),
            "STATE".into(),
            "AGENT".into(),
            "FRAMEWORK".into(),
        ]];
        // Pending tasks (deprecated by Mesos, still filled by older masters) come first.
        #[allow(deprecated)]
        let mut list: Vec<&Task> = tasks.pending_tasks.iter().chain(&tasks.tasks).collect();
        if args.all {
            list.extend(&tasks.completed_tasks);
        }
        for t in list {
            let state = TaskState::try_from(t.state)
                .map(|s| s.as_str_name().trim_start_matches("TASK_").to_string())
                .unwrap_or_else(|_| t.state.to_string());
            rows.push(vec![
                t.task_id.value.clone(),
                t.name.clone(),
                state,
                t.agent_id.value.clone(),
                t.framework_id.value.clone(),
            ]);
        }
        println!();
        print_table(&rows);
        Ok(ExitCode::SUCCESS)
    })
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
