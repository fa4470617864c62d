//! Runs the DC/OS simulator by hand: `cargo run --example dcos_sim`. Prints the
//! endpoint, token, login and task id to put in a ferry `dcos` source, then grows
//! the journal (`dcos-mesos-master.service`, `dcos-log.service`) and a task's
//! stdout every second until Ctrl-C.

#[path = "../tests/support/dcos_sim.rs"]
mod dcos_sim;

use std::time::Duration;

use dcos_sim::{DcosSim, SimConfig};

const TASK: &str = "nginx.2f9d1c2e-9b0a-11e6-8e3a-0242ac110005";

#[tokio::main]
async fn main() {
    let sim = DcosSim::start(SimConfig::default()).await;
    sim.journal(
        "dcos-mesos-master.service",
        [(6, "Master started"), (4, "Agent registered late")],
    );
    sim.add_task(TASK, "fe406283-a2d2-4e1c-8d43-1d2b1d4f6a3e-S1");
    sim.task_lines(TASK, "stdout", ["nginx: ready"]);
    let config = sim.config();
    println!("endpoint = \"{}\"", sim.url());
    println!("token    = \"{}\"", config.token);
    println!("uid      = \"ferry\"   # password = \"hunter2-dcos\"");
    println!("tasks    = [\"{TASK}\"]");
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                let unit = if n % 2 == 0 { "dcos-mesos-master.service" } else { "dcos-log.service" };
                sim.journal(unit, [((n % 8) as u8, format!("tick {n}"))]);
                sim.task_lines(TASK, "stdout", [format!("GET /index.html 200 ({n})")]);
                n += 1;
            }
        }
    }
}
