"""Active rules: which policies and profiles apply to which local endpoint.

How it works (Calico's ``ActiveRulesCalculator``)::

    local endpoints (effective labels) ──► LabelIndex[policy key, endpoint key] ◄── policy selectors
          │ profile ids                              │ match / unmatch
          ▼                                          ▼
    profile users (refcount)              policy ↔ endpoint matches
          │ first user / last user                   │ first match / last match
          ▼                                          ▼
    profile active: compile its rules     policy active: compile its rules
    (a missing profile: deny everything)             │
          └──────────────► RuleScanner (IP sets) ◄───┘

A policy is active while it matches at least one local endpoint; a profile
while a local endpoint names it. Active ones have a desired message that the
sequencer sends; every change marks what must be re-sent as dirty.
"""

from __future__ import annotations

from collections.abc import Mapping

from libcalico.selector.labelindex import LabelIndex
from services.felix.calc.dirty import Dirty
from services.felix.calc.policies import PolicyRecord, ProfileRecord
from services.felix.calc.rule_scanner import RuleScanner
from services.felix.calc.rules import compile_rules, deny_all
from services.felix.messages import ActivePolicyUpdate, ActiveProfileUpdate


def _ordering(record: PolicyRecord) -> tuple[object, ...]:
    """The parts of a policy that decide where it appears in an endpoint's tiers."""
    return (record.id, record.order, record.ingress, record.egress, record.untracked, record.pre_dnat,
            record.apply_on_forward)


class ActiveRules:
    """Matches policies to local endpoints and keeps the compiled rules of the active ones."""

    def __init__(self, scanner: RuleScanner, dirty: Dirty) -> None:
        self._scanner = scanner
        self._dirty = dirty
        self._index: LabelIndex[str, str] = LabelIndex(self._match, self._unmatch)
        self._policies: dict[str, PolicyRecord] = {}
        self._eps_of_policy: dict[str, set[str]] = {}
        self._policies_of_ep: dict[str, set[str]] = {}
        self._compiled_from: dict[str, PolicyRecord] = {}
        self.desired_policies: dict[str, ActivePolicyUpdate] = {}
        self._profiles: dict[str, ProfileRecord] = {}
        self._profiles_of_ep: dict[str, tuple[str, ...]] = {}
        self._users_of_profile: dict[str, set[str]] = {}
        self.desired_profiles: dict[str, ActiveProfileUpdate] = {}
        # While deferring (a cold start's first part): policies and profiles that became active, compiled later.
        self._deferred: dict[tuple[str, str], None] | None = None

    # ------------------------------------------------------------------ queries

    def policies_of(self, ep_key: str) -> list[PolicyRecord]:
        """The policies that apply to a local endpoint."""
        return [self._policies[k] for k in self._policies_of_ep.get(ep_key, ())]

    def endpoints_of(self, policy_key: str) -> frozenset[str]:
        """The local endpoints a policy applies to."""
        return frozenset(self._eps_of_policy.get(policy_key, ()))

    def policy(self, key: str) -> PolicyRecord | None:
        """The record of an enforced policy, active or not."""
        return self._policies.get(key)

    # ----------------------------------------------------------------- policies

    def update_policy(self, key: str, record: PolicyRecord | None) -> None:
        """A policy was added, changed or (None) deleted."""
        old = self._policies.get(key)
        if record is None:
            if old is not None:
                self._index.delete_selector(key)  # the last unmatch deactivates it
                del self._policies[key]
            return
        self._policies[key] = record
        if old is None and self._index.selector(key) is None:
            self._add_policy(key, record)
            return
        self._index.update_selector(key, record.selector)
        if key in self._eps_of_policy:
            self._compile(key)
            if old is not None and _ordering(old) != _ordering(record):
                self._dirty.endpoints.update(self._eps_of_policy[key])

    def _add_policy(self, key: str, record: PolicyRecord) -> None:
        """A new policy: its matches in one go (as ``_match`` would record them one by one)."""
        index = self._index
        index.update_selector(key, record.selector, quiet=True)
        matched = index.matches_view(key)
        if not matched:
            return
        self._eps_of_policy[key] = set(matched)
        self._compile(key)
        of_ep = self._policies_of_ep
        for ep_key in matched:
            mine = of_ep.get(ep_key)
            if mine is None:
                of_ep[ep_key] = {key}
            else:
                mine.add(key)
        self._dirty.endpoints.update(matched)

    def defer_compiling(self) -> None:
        """From now on, only note which policies and profiles become active; :meth:`compile_deferred` compiles
        them (the endpoints' matches and profile lists are known without their rules)."""
        if self._deferred is None:
            self._deferred = {}

    def compile_deferred(self) -> None:
        """Compile what became active while deferring (in the order it did), and stop deferring."""
        deferred, self._deferred = self._deferred, None
        for kind, key in deferred or ():
            if kind == "policy":
                if key in self._eps_of_policy:
                    self._compile(key)
            elif key in self._users_of_profile:
                self._compile_profile(key)

    def _compile(self, key: str) -> None:
        if self._deferred is not None:
            self._deferred["policy", key] = None
            return
        record = self._policies[key]
        if self._compiled_from.get(key) is record:
            return
        self._compiled_from[key] = record
        compiled = compile_rules(record.inbound_rules, record.outbound_rules, record.namespace, record.id.name)
        self._scanner.update_owner(("policy", key), compiled.ipsets)
        self.desired_policies[key] = ActivePolicyUpdate(
            id=record.id,
            inbound_rules=compiled.inbound,
            outbound_rules=compiled.outbound,
            namespace=record.namespace,
            untracked=record.untracked,
            pre_dnat=record.pre_dnat,
        )
        self._dirty.policies.add(key)

    def _match(self, policy_key: str, ep_key: str) -> None:
        eps = self._eps_of_policy.get(policy_key)
        if eps is None:
            self._eps_of_policy[policy_key] = {ep_key}
            self._compile(policy_key)
        else:
            eps.add(ep_key)
        self._policies_of_ep.setdefault(ep_key, set()).add(policy_key)
        self._dirty.endpoints.add(ep_key)

    def _unmatch(self, policy_key: str, ep_key: str) -> None:
        eps = self._eps_of_policy[policy_key]
        eps.discard(ep_key)
        if not eps:
            del self._eps_of_policy[policy_key]
            self._compiled_from.pop(policy_key, None)
            self.desired_policies.pop(policy_key, None)
            self._scanner.remove_owner(("policy", policy_key))
            self._dirty.policies.add(policy_key)
        mine = self._policies_of_ep[ep_key]
        mine.discard(policy_key)
        if not mine:
            del self._policies_of_ep[ep_key]
        self._dirty.endpoints.add(ep_key)

    # ---------------------------------------------------------------- endpoints

    def update_endpoint(self, ep_key: str, labels: Mapping[str, str], profile_ids: tuple[str, ...]) -> None:
        """A local endpoint was added or changed (effective labels, profiles in order)."""
        old = self._profiles_of_ep.get(ep_key, ())
        self._profiles_of_ep[ep_key] = profile_ids
        for name in dict.fromkeys(profile_ids):
            if name not in old:
                self._use_profile(name, ep_key)
        for name in set(old) - set(profile_ids):
            self._release_profile(name, ep_key)
        self._index.update_labels(ep_key, labels)
        self._dirty.endpoints.add(ep_key)

    def delete_endpoint(self, ep_key: str) -> None:
        """A local endpoint went away (or stopped being local)."""
        self._index.delete_labels(ep_key)
        for name in set(self._profiles_of_ep.pop(ep_key, ())):
            self._release_profile(name, ep_key)
        self._dirty.endpoints.add(ep_key)

    # ----------------------------------------------------------------- profiles

    def update_profile(self, name: str, profile: ProfileRecord | None) -> None:
        """A profile was added, changed or (None) deleted; an active one is recompiled."""
        if profile is None:
            self._profiles.pop(name, None)
        else:
            self._profiles[name] = profile
        if name in self._users_of_profile:
            self._compile_profile(name)

    def _use_profile(self, name: str, ep_key: str) -> None:
        users = self._users_of_profile.get(name)
        if users is None:
            self._users_of_profile[name] = {ep_key}
            self._compile_profile(name)
        else:
            users.add(ep_key)

    def _release_profile(self, name: str, ep_key: str) -> None:
        users = self._users_of_profile.get(name)
        if users is None:
            return
        users.discard(ep_key)
        if not users:
            del self._users_of_profile[name]
            self.desired_profiles.pop(name, None)
            self._scanner.remove_owner(("profile", name))
            self._dirty.profiles.add(name)

    def _compile_profile(self, name: str) -> None:
        if self._deferred is not None:
            self._deferred["profile", name] = None
            return
        profile = self._profiles.get(name)
        if profile is None:
            compiled = deny_all(name)
        else:
            compiled = compile_rules(profile.inbound_rules, profile.outbound_rules, None, name)
        self._scanner.update_owner(("profile", name), compiled.ipsets)
        self.desired_profiles[name] = ActiveProfileUpdate(name, compiled.inbound, compiled.outbound)
        self._dirty.profiles.add(name)
