/**
 * cgroup v2 names and ids: the id the kernel puts in each record is the inode
 * number of the cgroup's directory under /sys/fs/cgroup, so a path turns into
 * an id with one stat, and an id back into a path with one walk (cached).
 * @module
 */
import { EcapError } from "../base/errors.ts";

/**
 * Where cgroup v2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a
 * hybrid (v1 + v2) system; from /proc/self/mounts.
 */
export function cgroupRoot(): string {
  try {
    for (const line of Deno.readTextFileSync("/proc/self/mounts").split("\n")) {
      const [, dir, type] = line.split(" ");
      if (type === "cgroup2") return dir.replaceAll("\\040", " ");
    }
  } catch { /* no procfs: assume the usual place */ }
  return "/sys/fs/cgroup";
}

/** A cgroup as the kernel filter needs it. */
export interface CgroupFilter {
  /** Path below the cgroup root, starting with "/". */
  path: string;
  /** cgroup id: the inode number of its directory. */
  id: number;
  /** Depth below the root (the root is 0): bpf_get_current_ancestor_cgroup_id's level. */
  level: number;
}

/**
 * Resolves `--cgroup PATH`: a path below the cgroup v2 root
 * ("/system.slice/nginx.service") or the whole path
 * ("/sys/fs/cgroup/system.slice/nginx.service"). Throws EcapError if it is not
 * a cgroup v2 directory.
 */
export function resolveCgroup(path: string, root = cgroupRoot()): CgroupFilter {
  const inner = (path.startsWith(`${root}/`) ? path.slice(root.length) : path)
    .split("/").filter((p) => p !== "" && p !== ".");
  if (inner.includes("..")) {
    throw new EcapError(`Invalid --cgroup "${path}": ".." is not allowed`, { kind: "usage" });
  }
  const dir = [root, ...inner].join("/");
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dir);
    Deno.statSync(`${dir}/cgroup.procs`);
  } catch {
    throw new EcapError(`No cgroup v2 "${path}" (looked for ${dir}/cgroup.procs)`, {
      kind: "not-found",
      hint: `name a directory under ${root}, e.g. /system.slice/nginx.service`,
    });
  }
  if (!info.isDirectory) {
    throw new EcapError(`--cgroup "${path}" is not a directory`, { kind: "usage" });
  }
  return { path: `/${inner.join("/")}`, id: info.ino!, level: inner.length };
}

// Runtimes name a container's cgroup after its id: docker-<id>.scope,
// /docker/<id>, libpod-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope,
// kubepods..., lxc.payload.<name>, machine.slice (systemd-nspawn, VMs).
const CONTAINER =
  /(^|\/)(docker|libpod|cri-containerd|crio|containerd|buildkit|podman)[-/][^/]+|(^|\/)kubepods[^/]*|(^|\/)lxc\.payload\.[^/]+|(^|\/)machine\.slice\/[^/]+/;

/**
 * The cgroup path of the container a cgroup belongs to (the path cut after the
 * container's own directory), or undefined when it looks like no container's.
 */
export function containerOf(path: string): string | undefined {
  const m = CONTAINER.exec(path);
  if (!m) return undefined;
  return path.slice(0, m.index + m[0].length);
}

/** Maps cgroup ids to paths, walking the cgroup tree at most once a second on a miss. */
export class CgroupNames {
  #byId = new Map<number, string>();
  #walkedAt = -Infinity;
  #root: string;

  constructor(root = cgroupRoot()) {
    this.#root = root;
  }

  /** The path of cgroup `id` below the root ("/" for the root), or undefined. */
  path(id: number): string | undefined {
    if (id === 0) return undefined;
    const hit = this.#byId.get(id);
    if (hit !== undefined || performance.now() - this.#walkedAt < 1000) return hit;
    this.#walk();
    return this.#byId.get(id);
  }

  #walk() {
    this.#walkedAt = performance.now();
    const stack: string[] = [""];
    let budget = 100_000; // a bound on a pathological tree
    while (stack.length > 0 && budget-- > 0) {
      const rel = stack.pop()!;
      const dir = `${this.#root}${rel}`;
      try {
        this.#byId.set(Deno.statSync(dir).ino!, rel === "" ? "/" : rel);
        for (const e of Deno.readDirSync(dir)) if (e.isDirectory) stack.push(`${rel}/${e.name}`);
      } catch {
        // gone meanwhile, or unreadable: its id stays unknown
      }
    }
  }
}

/**
 * The fields --json adds to an event of a process: `cgroup_id`, and
 * `container` (the container's cgroup path) when the process runs in one.
 */
export function cgroupFields(
  names: CgroupNames,
  cgroupId: number | undefined,
): Record<string, unknown> {
  if (!cgroupId) return {};
  const path = names.path(cgroupId);
  const container = path === undefined ? undefined : containerOf(path);
  return { cgroup_id: cgroupId, container: container ?? null };
}
