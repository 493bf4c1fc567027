//! The API an operator under test serves: where the driver creates the same workload (a set of
//! one main, sub-agents and a toolbox; Hibernations of sub-agent pods). Ours and the upstream
//! Go operator v0.1.1 serve `cocoon.cis/v1alpha1`; the upstream v0.3.3 serves
//! `cocoonset.cocoonstack.io/v1` (CocoonSet, CocoonHibernation) with its own field names.
//! Only the objects differ: the scenarios and their judging (by pods) are the same.

use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Client, CustomResourceExt};
use serde_json::{Value, json};

use cocoon_operator::api::{CocoonSet, Hibernation};

/// Which API the operator under test serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `cocoon.cis/v1alpha1` CocoonSet and Hibernation (ours, upstream v0.1.1).
    CocoonCis,
    /// `cocoonset.cocoonstack.io/v1` CocoonSet and CocoonHibernation (upstream v0.3.3).
    Cocoonstack,
}

impl Flavour {
    /// `cocoon.cis` or `cocoonstack.io`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "cocoon.cis" => Ok(Self::CocoonCis),
            "cocoonstack.io" | "cocoonset.cocoonstack.io" => Ok(Self::Cocoonstack),
            other => {
                Err(format!("{other:?} is no API the bench drives: cocoon.cis or cocoonstack.io"))
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CocoonCis => "cocoon.cis",
            Self::Cocoonstack => "cocoonstack.io",
        }
    }

    /// The set kind.
    pub fn set_resource(self) -> ApiResource {
        match self {
            Self::CocoonCis => ApiResource::erase::<CocoonSet>(&()),
            Self::Cocoonstack => cocoonstack("CocoonSet", "cocoonsets"),
        }
    }

    /// The Hibernation kind.
    pub fn hibernation_resource(self) -> ApiResource {
        match self {
            Self::CocoonCis => ApiResource::erase::<Hibernation>(&()),
            Self::Cocoonstack => cocoonstack("CocoonHibernation", "cocoonhibernations"),
        }
    }

    pub fn sets(self, client: Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client, ns, &self.set_resource())
    }

    pub fn hibernations(self, client: Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client, ns, &self.hibernation_resource())
    }

    /// The CRDs of this API when no files are given (ours; the upstream v0.3.3's come with
    /// its build).
    pub fn default_crds(
        self,
    ) -> Option<Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>>
    {
        match self {
            Self::CocoonCis => Some(vec![Hibernation::crd(), CocoonSet::crd()]),
            Self::Cocoonstack => None,
        }
    }

    /// A set of one main, `replicas` sub-agents and one toolbox `box`.
    pub fn set(self, name: &str, replicas: i32) -> DynamicObject {
        let spec = match self {
            Self::CocoonCis => serde_json::to_value(super::workload::set_spec(replicas))
                .unwrap_or_else(|e| panic!("the bench's set spec serialises: {e}")),
            Self::Cocoonstack => json!({
                "agent": {"image": "ubuntu-dev-base", "replicas": replicas},
                "toolboxes": [{"name": "box", "image": "chromium"}]
            }),
        };
        DynamicObject::new(name, &self.set_resource()).data(json!({ "spec": spec }))
    }

    /// A Hibernation of pod `pod` asking to hibernate it (or wake it).
    pub fn hibernation(self, name: &str, pod: &str, hibernate: bool) -> DynamicObject {
        let spec = match self {
            Self::CocoonCis => json!({
                "podName": pod,
                "action": if hibernate { "hibernate" } else { "wake" },
            }),
            Self::Cocoonstack => json!({
                "podRef": {"name": pod},
                "desire": if hibernate { "Hibernate" } else { "Wake" },
            }),
        };
        DynamicObject::new(name, &self.hibernation_resource()).data(json!({ "spec": spec }))
    }

    /// The merge patch that turns a Hibernation to hibernate (or wake).
    pub fn action_patch(self, hibernate: bool) -> Value {
        match self {
            Self::CocoonCis => {
                json!({"spec": {"action": if hibernate { "hibernate" } else { "wake" }}})
            }
            Self::Cocoonstack => {
                json!({"spec": {"desire": if hibernate { "Hibernate" } else { "Wake" }}})
            }
        }
    }
}

fn cocoonstack(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "cocoonset.cocoonstack.io".into(),
        version: "v1".into(),
        api_version: "cocoonset.cocoonstack.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_workload_is_written_in_each_api() {
        let ours = Flavour::CocoonCis.set("set-0", 3);
        assert_eq!(
            ours.types.as_ref().map(|t| t.api_version.as_str()),
            Some("cocoon.cis/v1alpha1")
        );
        assert_eq!(ours.data["spec"]["agent"]["replicas"], 3);
        assert_eq!(ours.data["spec"]["toolboxes"][0]["name"], "box");
        let theirs = Flavour::Cocoonstack.set("set-0", 3);
        assert_eq!(
            theirs.types.as_ref().map(|t| (t.api_version.as_str(), t.kind.as_str())),
            Some(("cocoonset.cocoonstack.io/v1", "CocoonSet"))
        );
        assert_eq!(theirs.data["spec"]["agent"]["replicas"], 3);
        let hib = Flavour::Cocoonstack.hibernation("h-0", "set-0-1", true);
        assert_eq!(hib.data["spec"], json!({"podRef": {"name": "set-0-1"}, "desire": "Hibernate"}));
        let hib = Flavour::CocoonCis.hibernation("h-0", "set-0-1", false);
        assert_eq!(hib.data["spec"], json!({"podName": "set-0-1", "action": "wake"}));
        assert_eq!(Flavour::parse("cocoonstack.io"), Ok(Flavour::Cocoonstack));
        assert!(Flavour::parse("cocoon").unwrap_err().contains("cocoon.cis or cocoonstack.io"));
    }
}
