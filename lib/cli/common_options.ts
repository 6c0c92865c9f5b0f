/**
 * The options every module takes, as data: the command line, help,
 * completions and the man page all read this one table.
 * @module
 */
import type { OptionSpec } from "../core/module_spec.ts";
import { DEFAULT_WEB_ADDRESS } from "../web/web_access.ts";
import { DEFAULT_WEB_HISTORY } from "../web/web_history.ts";

/** Options of every module, in the order help lists them. */
export const COMMON_OPTIONS: readonly OptionSpec[] = [
  {
    name: "pid",
    short: "p",
    type: "string",
    multiple: true,
    arg: "PID",
    help: "only this process (repeatable)",
  },
  {
    name: "follow-children",
    type: "boolean",
    help: "with -p: also what those processes fork or exec later",
  },
  { name: "uid", short: "u", type: "string", arg: "UID", help: "only processes of this user id" },
  { name: "comm", type: "string", arg: "NAME", help: "only processes of this name" },
  {
    name: "cgroup",
    type: "string",
    arg: "PATH",
    help: "only processes in this cgroup v2 (a container, a systemd unit) or below",
  },
  {
    name: "no-follow",
    type: "boolean",
    help: "probe only what is found at start, not what processes started later map",
  },
  {
    name: "list-targets",
    type: "boolean",
    help: "print the files ecap would probe (inode, version, processes) and exit",
  },
  { name: "json", type: "boolean", help: "one JSON object per event, then one with stats" },
  {
    name: "output",
    short: "o",
    type: "string",
    arg: "FILE",
    help: "write events to FILE (created 0600, appended to) instead of stdout; - is stdout",
  },
  {
    name: "count",
    short: "c",
    type: "string",
    arg: "N",
    help: "stop after N events (with -w: N packets)",
  },
  {
    name: "duration",
    type: "string",
    arg: "SECONDS",
    help: "stop after this many seconds (default: until Ctrl-C)",
  },
  {
    name: "mapsize",
    type: "string",
    arg: "BYTES",
    help: "ring buffer size, e.g. 8M (default 8M; rounded up to a power of two); " +
      "past half full, big records are kept short",
  },
  {
    name: "nice",
    type: "string",
    arg: "N",
    help: "ecap's CPU priority, -20 to 19 (default -10: under full load the traced " +
      "processes wait for ecap rather than it losing their records; 0 leaves it as is)",
  },
  {
    name: "web",
    type: "string",
    arg: "[ADDR:]PORT",
    help: `also serve a live view of the capture to a browser (default ${DEFAULT_WEB_ADDRESS}; ` +
      "an address beyond loopback needs a token)",
  },
  {
    name: "web-token",
    type: "string",
    arg: "TOKEN",
    help: "the token the view asks every request for (default: none on loopback, else a " +
      "random one, printed once; ECAP_WEB_TOKEN keeps it out of ps)",
  },
  {
    name: "web-history",
    type: "string",
    arg: "N",
    help: `rows the view keeps, the oldest dropped and counted (default ${DEFAULT_WEB_HISTORY})`,
  },
  {
    name: "quiet",
    short: "q",
    type: "boolean",
    help: "no start and summary lines on stderr (errors still)",
  },
  {
    name: "verbose",
    short: "v",
    type: "boolean",
    help: "show kernel logs and stack traces (-d too)",
  },
  {
    name: "debug",
    type: "boolean",
    help: "--verbose, and log each file probed or released while capturing",
  },
  { name: "help", short: "h", type: "boolean", help: "show this help" },
  { name: "version", short: "V", type: "boolean", help: "print ecap's version" },
];

/** Short options kept from earlier releases, as the ones they now spell. */
export const SHORT_ALIASES: Readonly<Record<string, string>> = { d: "v" };

/** What may follow a bare --web as its value (else it takes the default). */
const WEB_VALUE = /^(?:(?:\[[0-9a-fA-F:.]+\]|[\w.-]*):)?\d{1,5}$/;

/** Options whose value may be left out: the next word is theirs only if it fits. */
export const OPTIONAL_VALUES: Readonly<Record<string, { fits: RegExp; otherwise: string }>> = {
  web: { fits: WEB_VALUE, otherwise: DEFAULT_WEB_ADDRESS },
};
