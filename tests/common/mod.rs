//! The shared integration-test harness lives in the dev crate (`cocoon_dev::testing`), so the
//! dev crate's own tests and the plugin's use the same one.
#![allow(unused_imports)] // Each test binary uses a different part of the harness.

pub use cocoon_dev::testing::*;
