// The client's own version: the package's.
export { BERTH_VERSION as CLIENT_VERSION } from "../util/version.js";
