// The AppArmor profile of a container, as containerd's CRI plugin decides it: the
// SecurityProfile message wins over the deprecated apparmor_profile string; unset means
// RuntimeDefault (kubernetes#51746); RuntimeDefault is berth's generated default profile,
// loaded on first use, except for privileged containers, which run unconfined; Localhost
// names a profile that must already be loaded. Where the kernel lacks AppArmor there is
// nothing to confine with: the default quietly means none, an explicit profile is refused.

import { SecurityProfile_ProfileType, type SecurityProfile } from "../../gen/cri/runtime/v1/api.js";
import { FailedPreconditionError, InvalidArgumentError } from "../../util/errors.js";
import type { AppArmorHost } from "../../oci/apparmor-host.js";
import { appArmorProfileData, renderAppArmorProfile } from "../../oci/apparmor-profile.js";
import { profileFromString } from "./security-profiles.js";

const LOCALHOST_PREFIX = "localhost/";

export interface AppArmorRequest {
  profile?: SecurityProfile;
  /** The deprecated apparmor_profile string. */
  legacyProfile?: string;
  privileged: boolean;
  host: AppArmorHost;
  /** The profile RuntimeDefault means (berth-default). */
  defaultProfileName: string;
}

/**
 * Loads the default profile unless it is loaded already (containerd checks every time
 * too: an administrator may have replaced or removed it meanwhile).
 */
export function ensureDefaultProfile(host: AppArmorHost, name: string): void {
  if (host.loadedProfiles().includes(name)) return;
  if (!host.parserPath) {
    throw new FailedPreconditionError(
      `AppArmor is enabled but the default profile ${JSON.stringify(name)} is not loaded and apparmor_parser is not installed to load it (install the apparmor package)`,
    );
  }
  try {
    host.load(renderAppArmorProfile(appArmorProfileData(name, host)));
  } catch (err) {
    throw new FailedPreconditionError(
      `cannot load the default AppArmor profile ${JSON.stringify(name)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The AppArmor profile name for a container's process, or undefined for none. */
export function resolveAppArmor(req: AppArmorRequest): string | undefined {
  const sp = req.profile ?? profileFromString(req.legacyProfile ?? "", "apparmor");
  if (sp && sp.profileType !== SecurityProfile_ProfileType.Localhost && sp.localhostRef !== "") {
    throw new InvalidArgumentError("apparmor localhost_ref must only be set when the profile type is Localhost");
  }
  if (!req.host.kernelEnabled) {
    if (sp && sp.profileType === SecurityProfile_ProfileType.Localhost) {
      throw new FailedPreconditionError(
        `apparmor profile ${JSON.stringify(sp.localhostRef)} requested but AppArmor is not enabled on this node`,
      );
    }
    return undefined;
  }
  const type = sp?.profileType ?? SecurityProfile_ProfileType.RuntimeDefault;
  switch (type) {
    case SecurityProfile_ProfileType.Unconfined:
      return undefined;
    case SecurityProfile_ProfileType.RuntimeDefault:
      if (req.privileged) return undefined;
      ensureDefaultProfile(req.host, req.defaultProfileName);
      return req.defaultProfileName;
    case SecurityProfile_ProfileType.Localhost: {
      const ref = sp?.localhostRef ?? "";
      const name = ref.startsWith(LOCALHOST_PREFIX) ? ref.slice(LOCALHOST_PREFIX.length) : ref;
      if (name === "")
        throw new InvalidArgumentError("apparmor profile type Localhost needs a localhost_ref (a profile name)");
      // berth never loads a named profile itself: that is the administrator's policy.
      if (!req.host.loadedProfiles().includes(name)) {
        throw new FailedPreconditionError(`apparmor profile ${JSON.stringify(name)} is not loaded on this node`);
      }
      return name;
    }
    default:
      throw new InvalidArgumentError(`unknown apparmor profile type ${type}`);
  }
}
