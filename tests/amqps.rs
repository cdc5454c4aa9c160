//! `amqps://`: calls over TLS to the broker, its certificate verified against a private CA.
//!
//! The broker's TLS listener and the CA come from `scripts/lib/rabbitmq.sh`
//! (`ensure_rabbitmq_tls`, run by the test script): AMQPS_TEST_URL (default
//! `amqps://guest:guest@localhost:5671/%2f`) and AMQPS_TEST_CA (default
//! `/var/tmp/warren-tls/ca.pem`).

mod common;

use common::{QueueCleanup, kwargs, unique};
use mesh::{ConnectError, Mesh, MeshConfig};
use std::path::PathBuf;

fn amqps_url() -> String {
    std::env::var("AMQPS_TEST_URL")
        .unwrap_or_else(|_| "amqps://guest:guest@localhost:5671/%2f".to_owned())
}

fn amqps_config() -> MeshConfig {
    let mut config = MeshConfig::with_url(amqps_url());
    config.amqp.tls_ca_file = Some(PathBuf::from(
        std::env::var("AMQPS_TEST_CA").unwrap_or_else(|_| "/var/tmp/warren-tls/ca.pem".to_owned()),
    ));
    config
}

#[tokio::test]
async fn calls_go_over_amqps_verified_by_a_private_ca() {
    let mesh = Mesh::amqp(amqps_config()).await.unwrap_or_else(|e| {
        panic!("{e} (the TLS listener comes from ensure_rabbitmq_tls in scripts/lib/rabbitmq.sh)")
    });
    let name = unique("tls");
    let mut cleanup = QueueCleanup::new();
    cleanup.service(&name);
    let running = mesh
        .serve(greeter::service_named(&name))
        .await
        .expect("serve");
    let client = mesh.client("amqps-test").await.expect("client");
    let reply = client
        .rpc(&name)
        .call("hello", kwargs(serde_json::json!({"name": "tls"})))
        .await
        .expect("call over amqps");
    assert_eq!(reply, "Hello, tls!");
    running.stop().await;
    mesh.close().await;
}

#[tokio::test]
async fn an_untrusted_broker_certificate_is_refused_without_showing_the_password() {
    // The system's roots only: the private CA is not among them.
    let config = MeshConfig::with_url(amqps_url());
    let error = match Mesh::amqp(config).await {
        Ok(_) => panic!("connected to a broker whose certificate no trusted CA signed"),
        Err(error) => error,
    };
    assert!(matches!(error, ConnectError::Unreachable { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.to_lowercase().contains("certificate") || message.to_lowercase().contains("issuer"),
        "{message}"
    );
    assert!(message.contains("guest:***@"), "{message}");
    assert!(!message.contains("guest:guest"), "{message}");
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_refused_at_start() {
    let dir = std::env::temp_dir().join(unique("ca"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ca.pem");
    std::fs::write(&path, "not a certificate").expect("write");
    let mut config = amqps_config();
    config.amqp.tls_ca_file = Some(path.clone());
    let error = match Mesh::amqp(config).await {
        Ok(_) => panic!("connected with a CA file holding no certificate"),
        Err(error) => error,
    };
    assert!(matches!(error, ConnectError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("ca.pem"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}
