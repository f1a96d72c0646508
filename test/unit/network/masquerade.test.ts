// The pure parts of the default network's masquerade rule: the subnet as iptables stores it
// (so a restart's check matches the rule it made) and the owner tag in the rule's comment.
import assert from "node:assert/strict";
import { test } from "node:test";
import { canonicalSubnet, masqueradeOwner } from "../../../src/network/masquerade.js";
import { InvalidArgumentError } from "../../../src/util/errors.js";

test("subnets are canonical, as iptables -S prints them", () => {
  assert.equal(canonicalSubnet("10.85.0.0/16"), "10.85.0.0/16");
  assert.equal(canonicalSubnet("10.85.3.7/16"), "10.85.0.0/16");
  assert.equal(canonicalSubnet("192.168.1.130/25"), "192.168.1.128/25");
  assert.equal(canonicalSubnet("10.1.2.3/32"), "10.1.2.3/32");
  assert.equal(canonicalSubnet("255.255.255.255/1"), "128.0.0.0/1");
  assert.equal(canonicalSubnet("8.8.8.8/0"), "0.0.0.0/0");
});

test("a subnet that is not an IPv4 CIDR is refused", () => {
  for (const bad of ["10.85.0.0", "10.85.0.0/33", "10.256.0.0/16", "fd00::/64", "10.85.0.0/16 -j ACCEPT", ""]) {
    assert.throws(() => canonicalSubnet(bad), InvalidArgumentError, bad);
  }
});

test("the owner is the conf_dir, or a hash when it would not fit or quote cleanly in a comment", () => {
  assert.equal(masqueradeOwner("/etc/cni/net.d"), "/etc/cni/net.d");
  const long = "/" + "d".repeat(300);
  assert.match(masqueradeOwner(long), /^sha256:[0-9a-f]{32}$/);
  assert.equal(masqueradeOwner(long), masqueradeOwner(long), "stable across restarts");
  assert.notEqual(masqueradeOwner(long), masqueradeOwner(long + "x"));
  assert.match(masqueradeOwner('/etc/"cni"'), /^sha256:/);
});
