//! The operator's registry client against the real distribution registry: probe, push (the
//! simulator's part), delete of a tag (idempotent), and the retire of a snapshot that keeps it
//! as `:latest`.

use cocoon_dev::registry::LocalRegistry;
use cocoon_operator::registry::{Registry, RegistryConfig};

#[tokio::test]
async fn snapshots_are_probed_pushed_retired_and_deleted_in_a_real_registry() {
    let local = LocalRegistry::start().await.expect("start the registry");
    let config = RegistryConfig { address: format!("{}/cocoon", local.address()), auth_file: None };
    let registry = Registry::new(&config).expect("client");
    let vm = "vk-prod-demo-0";
    assert!(!registry.exists(vm, "hibernate").await.unwrap(), "nothing pushed yet");
    registry.delete(vm, "hibernate").await.expect("deleting what is not there is done already");

    registry.push_snapshot(vm, "hibernate", "node-a").await.expect("push");
    registry.push_snapshot("vk-prod-demo-1", "hibernate", "node-a").await.expect("push");
    assert!(registry.exists(vm, "hibernate").await.unwrap());

    // Retired and kept: the content moves to :latest, :hibernate is gone.
    registry.retire(vm, true).await.expect("retire, keeping");
    assert!(!registry.exists(vm, "hibernate").await.unwrap());
    assert!(registry.exists(vm, "latest").await.unwrap());
    // Retired without keeping: gone, and another VM's snapshot untouched.
    registry.retire("vk-prod-demo-1", false).await.expect("retire");
    assert!(!registry.exists("vk-prod-demo-1", "hibernate").await.unwrap());
    assert!(registry.exists(vm, "latest").await.unwrap());
    let requests = local.requests();
    assert!(requests.get("DELETE").copied().unwrap_or(0) >= 2, "{requests:?}");
}

#[tokio::test]
async fn a_registry_that_is_down_is_an_error_not_an_absence() {
    let mut local = LocalRegistry::start().await.expect("start the registry");
    let config = RegistryConfig { address: local.address().to_string(), auth_file: None };
    let registry = Registry::new(&config).expect("client");
    local.stop();
    let error = registry.exists("vk-a-b-0", "hibernate").await.expect_err("down");
    assert!(error.to_string().contains("probe vk-a-b-0:hibernate"), "{error}");
    assert!(registry.delete("vk-a-b-0", "hibernate").await.is_err());
}
