//! nameko's hello service: `POST /rpc/greeting_service/hello {"name": "Matt"}` → `"Hello, Matt!"`.
use mesh::{Args, RpcError, Service};
use warren_runtime::Runner;

#[derive(serde::Deserialize, utoipa::ToSchema)]
struct Hello {
    name: String,
}

async fn hello(Args(h): Args<Hello>) -> Result<String, RpcError> {
    Ok(format!("Hello, {}!", h.name))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let service = Service::new("greeting_service").rpc("hello", hello);
    let runner = Runner::from_args().with_gateway();
    runner.serve(service).run().await
}
