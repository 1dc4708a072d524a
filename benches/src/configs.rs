//! Configurations of the processes under test: meridian's as a
//! [`Config`] value (written by `meridian-harness`), nginx's as text.

use std::net::SocketAddr;
use std::path::Path;

use harness::config as node_config;
use proto::config::Config;

/// Ports of the `meridian` node's three listeners.
#[derive(Debug, Clone, Copy)]
pub struct MeridianPorts {
    /// OpenAI-compatible data plane.
    pub api: u16,
    /// Admin API, `/readyz`.
    pub admin: u16,
    /// Raft (UDP); unused by a lone node but still bound.
    pub raft: u16,
}

/// A one-node config with one upstream (the mock) and one route,
/// `bench-model`, and no client keys (no auth on loopback).
/// `workers` is `proxy.workers` (0: one per CPU).
pub fn meridian_config(
    dir: &Path,
    ports: MeridianPorts,
    mock: SocketAddr,
    workers: usize,
) -> Config {
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let mut config = node_config::node(1, "bench", &dir.join("data"));
    config.listen.api = loopback(ports.api);
    config.listen.admin = loopback(ports.admin);
    config.listen.raft = loopback(ports.raft);
    config.proxy.workers = workers;
    let mut upstream = node_config::upstream("mock", &format!("http://{mock}/v1"));
    upstream.region = "bench".to_owned();
    config.upstreams = vec![upstream];
    config.routes = vec![node_config::route(
        "bench-model",
        vec![vec![node_config::target("mock", "mock-model")]],
    )];
    config
}

/// HTTP modules whose temp paths nginx creates at startup when compiled in.
const OPTIONAL_TEMP_MODULES: [&str; 3] = ["fastcgi", "uwsgi", "scgi"];

/// An nginx config proxying everything on `listen_port` to `mock`, set up
/// the way one would for an AI API: upstream keep-alive, HTTP/1.1 to the
/// upstream, no buffering (streams pass chunk by chunk), no access log, and
/// every file it writes inside `dir`. `nginx_v` is the output of `nginx -V`,
/// used to leave out modules this build lacks. `workers` is one per CPU
/// when `None` (`auto`, which counts every CPU of the machine, not those
/// it is pinned to: a pinned nginx gets their count).
pub fn nginx_conf(
    dir: &Path,
    listen_port: u16,
    mock: SocketAddr,
    nginx_v: &str,
    workers: Option<usize>,
) -> String {
    let d = dir.display();
    let workers = workers.map_or_else(|| "auto".to_owned(), |n| n.to_string());
    let mut temp_paths =
        format!("    client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n");
    for module in OPTIONAL_TEMP_MODULES {
        if !nginx_v.contains(&format!("--without-http_{module}_module")) {
            temp_paths.push_str(&format!("    {module}_temp_path {d}/{module};\n"));
        }
    }
    format!(
        r#"worker_processes {workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
worker_rlimit_nofile 65536;

events {{
    worker_connections 16384;
}}

http {{
    access_log off;
{temp_paths}    client_body_buffer_size 1m;
    client_max_body_size 1m;
    keepalive_timeout 120s;
    keepalive_requests 1000000;

    upstream mock {{
        server {mock};
        keepalive 256;
        keepalive_requests 1000000;
    }}

    server {{
        listen 127.0.0.1:{listen_port};

        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn mock() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn meridian_config_points_the_route_at_the_mock() {
        let ports = MeridianPorts {
            api: 1,
            admin: 2,
            raft: 3,
        };
        let text =
            node_config::to_toml(&meridian_config(Path::new("/tmp/b"), ports, mock(), 0)).unwrap();
        let config = Config::from_toml(&text).unwrap();
        assert_eq!(config.node.data_dir, Path::new("/tmp/b/data"));
        assert_eq!(config.listen.admin, "127.0.0.1:2".parse().unwrap());
        assert_eq!(config.upstreams[0].base_url, "http://127.0.0.1:4000/v1");
        assert_eq!(
            config.routes[0].tiers,
            [[node_config::target("mock", "mock-model")]]
        );
    }

    #[test]
    fn nginx_config_keeps_files_in_the_dir_and_skips_missing_modules() {
        let conf = nginx_conf(
            Path::new("/tmp/b"),
            8080,
            mock(),
            "configure arguments: --without-http_uwsgi_module",
            None,
        );
        assert!(conf.contains("worker_processes auto;"));
        assert!(conf.contains("listen 127.0.0.1:8080;"));
        assert!(conf.contains("server 127.0.0.1:4000;"));
        assert!(conf.contains("keepalive 256;"));
        assert!(conf.contains("proxy_buffering off;"));
        assert!(conf.contains("fastcgi_temp_path /tmp/b/fastcgi;"));
        assert!(!conf.contains("uwsgi_temp_path"));
        assert!(conf.contains("pid /tmp/b/nginx.pid;"));
        let pinned = nginx_conf(Path::new("/tmp/b"), 8080, mock(), "", Some(4));
        assert!(pinned.contains("worker_processes 4;"), "{pinned}");
    }
}
