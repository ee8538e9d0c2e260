//! The per-invocation context every command handler gets: the global flags, the config directory and
//! session store, and the Kubernetes client (built once, on first use, so `help`/`version` and purely
//! local commands never read a kubeconfig).
//!
//! May import: cli (plain flag types), config, kube, error.

use std::cell::OnceCell;
use std::path::PathBuf;

use crate::cli::GlobalFlags;
use crate::config::{self, store::Store};
use crate::error::Result;
use crate::kube::{Client, Overrides};

/// What every command handler gets.
pub struct Ctx {
    pub global: GlobalFlags,
    client: OnceCell<Client>,
}

impl Ctx {
    /// A context for one invocation.
    pub fn new(global: GlobalFlags) -> Ctx {
        Ctx {
            global,
            client: OnceCell::new(),
        }
    }

    /// The config directory (KODAMA_CONFIG_DIR or ~/.kodama).
    pub fn config_dir(&self) -> Result<PathBuf> {
        config::config_dir()
    }

    /// The session store under the config directory.
    pub fn store(&self) -> Result<Store> {
        Ok(Store::new(self.config_dir()?))
    }

    /// The kubectl-style overrides from the global flags.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            kubeconfig: self.global.kubeconfig.clone(),
            context: self.global.context.clone(),
            cluster: self.global.cluster.clone(),
            user: self.global.user.clone(),
            namespace: self.global.namespace.clone(),
            request_timeout: self.global.request_timeout,
        }
    }

    /// The Kubernetes client, built on first use.
    pub fn client(&self) -> Result<&Client> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let c = Client::from_overrides(&self.overrides())?;
        Ok(self.client.get_or_init(|| c))
    }

    /// The namespace from `-n`, if given.
    pub fn namespace_flag(&self) -> Option<&str> {
        self.global.namespace.as_deref()
    }
}
