//! The real binary as a user runs it: `regionguard up`, and every service
//! as a process of its own.

use super::*;

/// `regionguard up` as a user runs it, in a directory of its own.
pub(crate) struct Up {
    pub(crate) child: tokio::process::Child,
    pub(crate) stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// What it printed until it said it is up.
    pub(crate) printed: String,
    pub(crate) config: std::path::PathBuf,
    /// Holds the config and state until the test ends.
    pub(crate) _dir: tempfile::TempDir,
}

/// Ports and a config for a local `up`: its own NATS (started by `up`),
/// simulator and gateway ports, a 1 s probe interval; `extra` is appended.
pub(crate) struct UpPorts {
    pub(crate) nats: u16,
    pub(crate) dns: u16,
    pub(crate) http: u16,
}

impl Up {
    /// Writes the config, starts `up` with `args`, and waits (90 s at most)
    /// until it says it is up.
    pub(crate) async fn start(regions: &[&str], extra: &str, args: &[&str]) -> (Self, UpPorts) {
        use tokio::io::AsyncBufReadExt;
        let ports = UpPorts {
            nats: rg_testkit::free_port(),
            dns: rg_testkit::free_port(),
            http: rg_testkit::free_port(),
        };
        let grpc = rg_testkit::free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("regionguard.toml");
        let regions = regions
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "[nats]\nservers = [\"nats://127.0.0.1:{}\"]\n\
                 [prober]\nregions = [{regions}]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
                 [simulator]\nlisten = \"127.0.0.1:{}\"\n\
                 [gateway]\nlisten = \"127.0.0.1:{}\"\ngrpc_listen = \"127.0.0.1:{grpc}\"\ninterval = \"1s\"\n{extra}",
                ports.nats, ports.dns, ports.http
            ),
        )
        .unwrap();
        let log = dir.path().join("up.log");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
            .arg("up")
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(args)
            .env_remove("RG_CONFIG")
            .env_remove("RG_NATS_URL")
            .env("RG_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(90), async {
            while let Ok(Some(line)) = stdout.next_line().await {
                let done = line.contains("regionguard is up");
                printed.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "up did not come up:\n{}\n--- stderr ---\n{}",
            printed.join("\n"),
            rg_testkit::tail(&log, 40)
        );
        let up = Self {
            child,
            stdout,
            printed: printed.join("\n"),
            config,
            _dir: dir,
        };
        (up, ports)
    }

    /// Runs `regionguard <args> --config <its config>`; its stdout.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RG_CONFIG")
            .env("USER", "tester")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "regionguard {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGTERM; waits (40 s at most) and returns the exit status and what
    /// it printed while stopping.
    pub(crate) async fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .expect("up stops within 40s")
            .unwrap();
        let mut rest = Vec::new();
        while let Ok(Some(line)) = self.stdout.next_line().await {
            rest.push(line);
        }
        (status, rest.join("\n"))
    }
}

/// The system as processes of the real binary (each with its own log and
/// metrics port), for tests that `kill -9` a service, restart NATS under
/// it, or start it before NATS: the simulator, a prober per default region,
/// the detector, the cascade service, the failover manager (plan mode) and
/// the gateway; and the notifier when the config gives it sinks.
pub(crate) struct Processes {
    nats_url: String,
    /// The NATS user the test's checks connect as, when the server has users.
    observer: Option<(String, String)>,
    pub(crate) config: std::path::PathBuf,
    pub(crate) http: SocketAddr,
    metrics: std::collections::BTreeMap<String, SocketAddr>,
    procs: std::collections::BTreeMap<String, rg_testkit::ServiceProcess>,
    /// Extra environment of each service, by name.
    env_for: Box<EnvFor>,
    pub(crate) dir: tempfile::TempDir,
}

/// Extra environment variables of a service, given its name.
type EnvFor = dyn Fn(&str) -> Vec<(String, String)>;

/// The servers of a comma-separated URL list.
pub(crate) fn server_addrs(urls: &str) -> Vec<async_nats::ServerAddr> {
    urls.split(',')
        .map(|u| u.parse().expect("a NATS URL"))
        .collect()
}

/// Service names of [`Processes`] and the config section of each.
pub(crate) const SERVICES: [(&str, &str); 8] = [
    ("simulator", "SIMULATOR"),
    ("prober-us-east-1", "PROBER"),
    ("prober-us-west-2", "PROBER"),
    ("prober-eu-west-1", "PROBER"),
    ("detector", "DETECTOR"),
    ("cascade", "CASCADE"),
    ("failover", "FAILOVER"),
    ("gateway", "GATEWAY"),
];

impl Processes {
    /// Writes the config (NATS at `nats_url`, 1 s rounds, quick round
    /// decisions, then `extra` TOML) and starts every service of
    /// [`SERVICES`] plus those of `more` (e.g. `("notifier", "NOTIFIER")`).
    /// Returns at once: NATS may not be there yet.
    pub(crate) fn start(nats_url: &str, extra: &str, more: &[(&str, &str)]) -> Self {
        Self::start_with(nats_url, extra, more, |_| Vec::new())
    }

    /// As [`Processes::start`], with `env_for(name)` added to each
    /// service's environment (e.g. its own NATS user).
    pub(crate) fn start_with(
        nats_url: &str,
        extra: &str,
        more: &[(&str, &str)],
        env_for: impl Fn(&str) -> Vec<(String, String)> + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dns = rg_testkit::free_port();
        let http = SocketAddr::from(([127, 0, 0, 1], rg_testkit::free_port()));
        let grpc = rg_testkit::free_port();
        let config = dir.path().join("regionguard.toml");
        // Several servers (a cluster) come comma-separated.
        let servers = nats_url
            .split(',')
            .map(|u| format!("{u:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "[nats]\nservers = [{servers}]\nrequest_timeout = \"2s\"\nconnect_timeout = \"1s\"\n\
                 [simulator]\nlisten = \"127.0.0.1:{dns}\"\n\
                 [prober]\ninterval = \"1s\"\ntimeout = \"400ms\"\nresolvers = [\"127.0.0.1:{dns}\"]\n\
                 [rounds]\nsettle = \"150ms\"\nround_timeout = \"3s\"\n\
                 [gateway]\nlisten = \"{http}\"\ngrpc_listen = \"127.0.0.1:{grpc}\"\ninterval = \"1s\"\n\
                 [failover]\nmode = \"plan\"\n{extra}\n"
            ),
        )
        .unwrap();
        let mut me = Self {
            nats_url: nats_url.to_owned(),
            observer: None,
            config,
            http,
            metrics: Default::default(),
            procs: Default::default(),
            env_for: Box::new(env_for),
            dir,
        };
        for (name, section) in SERVICES.iter().chain(more) {
            me.spawn(name, section);
        }
        me
    }

    fn spawn(&mut self, name: &str, section: &str) {
        let mut args = vec![name.split('-').next().unwrap_or(name)];
        let vantage;
        if let Some(region) = name.strip_prefix("prober-") {
            vantage = format!("{region}-p");
            args.extend(["--region", region, "--vantage", &vantage]);
        }
        let env = (self.env_for)(name);
        let (process, metrics) =
            spawn_service(name, section, &args, &self.config, self.dir.path(), &env);
        self.metrics.insert(name.to_owned(), metrics);
        self.procs.insert(name.to_owned(), process);
    }

    /// The checks of [`Processes::wait_all_healthy`] connect as this user.
    pub(crate) fn observed_as(mut self, user: &str, password: &str) -> Self {
        self.observer = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// One of the services.
    pub(crate) fn get(&mut self, name: &str) -> &mut rg_testkit::ServiceProcess {
        self.procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// Every service, by name.
    pub(crate) fn all(
        &mut self,
    ) -> impl Iterator<Item = (&String, &mut rg_testkit::ServiceProcess)> {
        self.procs.iter_mut()
    }

    /// The address of a service's `/metrics`.
    pub(crate) fn metrics_addr(&self, name: &str) -> SocketAddr {
        self.metrics[name]
    }

    /// A service's `/metrics` text ("" when it does not answer).
    pub(crate) async fn metrics(&self, name: &str) -> String {
        let addr = self.metrics[name];
        rg_testkit::http::get(addr, "/metrics")
            .await
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// Waits (60 s at most) until the gateway shows every endpoint of the
    /// three regions healthy and every durable consumer of the services
    /// started exists (the failover manager's and the notifier's consume
    /// only what is published after they first start).
    pub(crate) async fn wait_all_healthy(&self) {
        let http = self.http;
        rg_testkit::wait_until(
            "every endpoint healthy",
            Duration::from_secs(60),
            || async move {
                let Some(s) = snapshot(http).await else {
                    return rg_testkit::Waited::NotYet("no snapshot".into());
                };
                let summary = &s["summary"];
                let (total, healthy) = (num(&summary["total_endpoints"]), num(&summary["healthy"]));
                if total == 21.0 && healthy == 21.0 {
                    rg_testkit::Waited::Done(())
                } else {
                    rg_testkit::Waited::NotYet(format!("{summary}"))
                }
            },
        )
        .await;
        let mut wanted = vec![
            ("RG_HEALTH", "detector"),
            ("RG_HEALTH", "cascade"),
            ("RG_DECISIONS", "failover"),
            ("RG_DECISIONS", "failover-approvals"),
            ("RG_DECISIONS", "failover-rejections"),
        ];
        if self.procs.contains_key("notifier") {
            wanted.extend([
                ("RG_ALERTS", "notifier"),
                ("RG_DECISIONS", "notifier-decisions"),
            ]);
        }
        let (url, observer) = (&self.nats_url, &self.observer);
        let wanted = &wanted;
        rg_testkit::wait_until(
            "every durable consumer",
            Duration::from_secs(60),
            || async move {
                let options = match observer {
                    Some((user, password)) => async_nats::ConnectOptions::with_user_and_password(
                        user.clone(),
                        password.clone(),
                    ),
                    None => async_nats::ConnectOptions::new(),
                };
                let client = match options.connect(server_addrs(url)).await {
                    Ok(c) => c,
                    Err(e) => return rg_testkit::Waited::NotYet(format!("no NATS: {e}")),
                };
                let js = async_nats::jetstream::new(client);
                let mut missing = Vec::new();
                for (stream, durable) in wanted {
                    let found = match js.get_stream(*stream).await {
                        Ok(s) => s
                            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(durable)
                            .await
                            .is_ok(),
                        Err(_) => false,
                    };
                    if !found {
                        missing.push(*durable);
                    }
                }
                if missing.is_empty() {
                    rg_testkit::Waited::Done(())
                } else {
                    rg_testkit::Waited::NotYet(format!("missing {missing:?}"))
                }
            },
        )
        .await;
    }
}

impl Processes {
    /// Stops every service still running with SIGTERM and checks that each
    /// exits with 0 within 15 s (a clean drain).
    pub(crate) fn stop_all(&mut self) {
        for (name, p) in self.all() {
            if p.is_running() {
                let status = p.terminate(Duration::from_secs(15));
                assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
            }
        }
    }

    /// Stops every region's prober with SIGTERM and checks that each exits
    /// with 0 within `grace`: after this, every event they made was
    /// published (or they would have said so).
    pub(crate) fn stop_probers(&mut self, grace: Duration) {
        for region in rg_proto::domain::DEFAULT_REGIONS {
            let prober = format!("prober-{region}");
            let status = self.get(&prober).terminate(grace);
            assert!(status.is_some_and(|s| s.success()), "{prober}: {status:?}");
        }
    }
}

/// Starts `regionguard <args> --config <config>` as a process named `name`
/// in `dir`, logging at info, its `/metrics` on a free port
/// (`RG_<section>__METRICS_LISTEN`); `env` is added to its environment.
pub(crate) fn spawn_service(
    name: &str,
    section: &str,
    args: &[&str],
    config: &std::path::Path,
    dir: &std::path::Path,
    env: &[(String, String)],
) -> (rg_testkit::ServiceProcess, SocketAddr) {
    let metrics = SocketAddr::from(([127, 0, 0, 1], rg_testkit::free_port()));
    let config = config.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", &config]);
    let mut vars = vec![
        (format!("RG_{section}__METRICS_LISTEN"), metrics.to_string()),
        // RG_E2E_SERVICE_LOG: another log filter for the services (to
        // debug a test, e.g. `info,rg_bus=debug,async_nats=debug`).
        (
            "RG_LOG".to_owned(),
            std::env::var("RG_E2E_SERVICE_LOG").unwrap_or_else(|_| "info".to_owned()),
        ),
    ];
    vars.extend(env.iter().cloned());
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let process = rg_testkit::ServiceProcess::start(
        name,
        std::path::Path::new(env!("CARGO_BIN_EXE_regionguard")),
        &all,
        &vars,
        dir,
    );
    (process, metrics)
}

/// Runs `docker ARGS`; its standard output, trimmed, or what it said on
/// standard error when it failed.
pub(crate) async fn docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
