// Small helpers of the tests: bounded waiting, unique names (shared with
// the other suites).
export { sleep, waitFor, nextEvent, within, uniq } from "../../shared/wait.mjs";
