//! `run` (endpoint, sandbox and join as one change) and the recovery of
//! changes a dead process left half done (see [the module doc](super)).

use super::records::{endpoint_spec, network_spec};
use super::{Controller, Core, Endpoint, Sandbox, new_id, validate_name};
use crate::error::{Error, Result};
use crate::model::Intent;
use crate::options::{EndpointOptions, JoinOptions, SandboxOptions};

impl Controller {
    /// Creates sandbox `name` for endpoint `endpoint_id` to join: host mode
    /// if the endpoint's driver is (or `opts` says so).
    pub(super) fn sandbox_for(
        &self,
        core: &mut Core,
        endpoint_id: &str,
        name: &str,
        opts: JoinOptions,
    ) -> Result<String> {
        let ep = core.endpoint_by_id(endpoint_id)?;
        let net = core.network_by_id(&ep.network)?;
        let host = self.driver(&net.driver)?.host_mode();
        let opts = SandboxOptions {
            host_mode: opts.host_mode || host,
            ..opts
        };
        self.create_sandbox(core, name, &opts)
    }

    /// `plexus run`: an endpoint named `name` on `network`, a sandbox named
    /// `name`, and the join, all or nothing — also across a crash (the change
    /// is recorded first). The endpoint belongs to the sandbox: removing the
    /// sandbox removes it, joined or not. Refused with
    /// [`Error::SandboxExists`] if the sandbox exists.
    pub fn run(
        &self,
        name: &str,
        network: &str,
        opts: EndpointOptions,
        join: JoinOptions,
    ) -> Result<(Sandbox, Endpoint)> {
        validate_name("sandbox", name)?;
        let mut core = self.lock();
        if core.sandbox(name).is_ok() {
            return Err(Error::SandboxExists(name.to_owned()));
        }
        let net_id = core.network(network)?.id.clone();
        let ep_id = new_id();
        let intent = Intent::Join {
            sandbox: name.to_owned(),
            endpoint: ep_id.clone(),
            new_sandbox: true,
            new_endpoint: true,
        };
        core.begin(intent.clone())?;
        let opts = opts.remove_with_sandbox(true);
        let made = self
            .create_endpoint(&mut core, &net_id, name, &opts, ep_id.clone(), Some(name.to_owned()))
            .and_then(|_| self.sandbox_for(&mut core, &ep_id, name, join));
        let joined = made.and_then(|sb| {
            let ep = Endpoint {
                ctrl: self.clone(),
                id: ep_id.clone(),
            };
            ep.join_locked(&mut core, &sb).map(|_| sb)
        });
        match joined {
            Ok(sb) => {
                core.end(&intent)?;
                Ok((
                    Sandbox {
                        ctrl: self.clone(),
                        id: sb,
                    },
                    Endpoint {
                        ctrl: self.clone(),
                        id: ep_id,
                    },
                ))
            }
            Err(e) => {
                self.undo(&mut core, &intent);
                Err(e)
            }
        }
    }

    /// Finishes or undoes the changes a process that died left half done
    /// (see the module doc); what it did is in [`Controller::recovered`].
    pub(super) fn recover(&self) {
        let mut core = self.lock();
        for intent in core.state.intents.clone() {
            let note = self.undo(&mut core, &intent);
            core.recovered.push(note);
        }
    }

    /// What the start of this controller finished or undid of changes a
    /// dead process left half done, one line each.
    pub fn recovered(&self) -> Vec<String> {
        self.lock().recovered.clone()
    }

    /// Undoes what the change `intent` made, unless its last step happened;
    /// forgets the intent; says what it did.
    pub(super) fn undo(&self, core: &mut Core, intent: &Intent) -> String {
        let note = match intent {
            Intent::CreateEndpoint { endpoint } => {
                if core.state.endpoints.iter().any(|e| e.id == endpoint.id) {
                    format!("endpoint {}: created", endpoint.name)
                } else {
                    let deleted = core.network_by_id(&endpoint.network).cloned().and_then(|net| {
                        let drv = self.driver(&net.driver)?;
                        Ok(drv.delete_endpoint(&network_spec(&net), &endpoint_spec(endpoint))?)
                    });
                    match deleted {
                        Ok(()) => format!("endpoint {}: creation undone, its interfaces removed", endpoint.name),
                        Err(e) => format!("endpoint {}: creation undone ({e})", endpoint.name),
                    }
                }
            }
            Intent::Join {
                sandbox,
                endpoint,
                new_sandbox,
                new_endpoint,
            } => {
                let sb_id = core.sandbox(sandbox).ok().map(|s| s.id.clone());
                let done = sb_id.is_some()
                    && core
                        .endpoint_by_id(endpoint)
                        .is_ok_and(|e| e.sandbox.is_some() && e.sandbox == sb_id);
                if done {
                    format!("sandbox {sandbox}: joined")
                } else {
                    let mut undone = Vec::new();
                    if *new_sandbox {
                        match &sb_id {
                            Some(id) => {
                                let _ = self.delete_sandbox(core, id);
                            }
                            None => {
                                // Made but not recorded: only its namespace is left.
                                let ns = format!("{}{}", self.inner.config.netns_prefix, sandbox);
                                let _ = self.inner.namespaces.remove(&ns);
                            }
                        }
                        undone.push("sandbox removed");
                    }
                    if *new_endpoint && core.endpoint_by_id(endpoint).is_ok() {
                        let _ = self.delete_endpoint(core, endpoint, true);
                        undone.push("endpoint removed");
                    }
                    format!("sandbox {sandbox}: join undone ({})", undone.join(", "))
                }
            }
        };
        let _ = core.end(intent);
        note
    }
}
