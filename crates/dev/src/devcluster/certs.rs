//! The throw-away PKI of a dev cluster: a CA, the API server's serving certificate, client
//! certificates for the admin and the controller manager, and the service-account signing key.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{Error, Result};

/// Paths of the PEM files written by [`Pki::write`], all inside one directory.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub controller_manager_cert: PathBuf,
    pub controller_manager_key: PathBuf,
    pub scheduler_cert: PathBuf,
    pub scheduler_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

/// Who a client certificate identifies: the common name is the user, the organisation the group.
struct ClientIdentity<'a> {
    user: &'a str,
    group: &'a str,
}

impl Pki {
    /// Generates every key and certificate (ECDSA P-256) and writes them to `dir`.
    pub fn write(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "cocoon-dev-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            // The first address of the service range: in-cluster clients dial it.
            "10.0.0.1".to_string(),
        ])?;
        serving.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let client = |identity: ClientIdentity<'_>| -> Result<(String, String)> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(DnType::CommonName, identity.user);
            params.distinguished_name.push(DnType::OrganizationName, identity.group);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = params.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (admin_cert, admin_key) =
            client(ClientIdentity { user: "cocoon-dev-admin", group: "system:masters" })?;
        // With `--use-service-account-credentials=false` every controller runs as this identity,
        // so it needs more than the bootstrap `system:kube-controller-manager` role grants.
        let (kcm_cert, kcm_key) = client(ClientIdentity {
            user: "system:kube-controller-manager",
            group: "system:masters",
        })?;

        // The bootstrap `system:kube-scheduler` role grants what it needs (binding, events,
        // leases, its informers).
        let (scheduler_cert, scheduler_key) = client(ClientIdentity {
            user: "system:kube-scheduler",
            group: "system:authenticated",
        })?;

        let sa_key = KeyPair::generate()?;

        let pki = Self {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            controller_manager_cert: dir.join("controller-manager.crt"),
            controller_manager_key: dir.join("controller-manager.key"),
            scheduler_cert: dir.join("scheduler.crt"),
            scheduler_key: dir.join("scheduler.key"),
            service_account_key: dir.join("service-account.key"),
            service_account_pub: dir.join("service-account.pub"),
        };
        let files = [
            (&pki.ca_cert, ca_cert.pem()),
            (&pki.serving_cert, serving_cert.pem()),
            (&pki.serving_key, serving_key.serialize_pem()),
            (&pki.admin_cert, admin_cert),
            (&pki.admin_key, admin_key),
            (&pki.controller_manager_cert, kcm_cert),
            (&pki.controller_manager_key, kcm_key),
            (&pki.scheduler_cert, scheduler_cert),
            (&pki.scheduler_key, scheduler_key),
            (&pki.service_account_key, sa_key.serialize_pem()),
            (&pki.service_account_pub, sa_key.public_key_pem()),
        ];
        for (path, pem) in files {
            std::fs::write(path, pem)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        Ok(pki)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pem_file_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::write(dir.path()).expect("pki");
        for path in [&pki.ca_cert, &pki.serving_cert, &pki.admin_key, &pki.service_account_pub] {
            let text = std::fs::read_to_string(path).expect("read pem");
            assert!(text.starts_with("-----BEGIN "), "{} is not PEM", path.display());
        }
    }
}
