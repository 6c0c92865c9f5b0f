/**
 * ecap's own CPU priority. Under full load a reader with an equal share of
 * the CPU falls behind in bursts and the ring overflows; with a higher
 * priority it is scheduled first when records wait, and the traced
 * processes wait for it instead (64 KiB HTTPS responses under wrk on 2
 * CPUs: 28,395 records lost at nice 0, 416 at -10, same throughput).
 * @module
 */

const PRIO_PROCESS = 0;

/**
 * libc's setpriority(2), opened once. Not node:os's setPriority: the first
 * node: module a process imports costs its start 15-20 ms.
 */
let libc:
  | Deno.DynamicLibrary<{
    setpriority: { parameters: ["i32", "u32", "i32"]; result: "i32" };
  }>
  | undefined;

/** Sets the nice value of every thread of this process (Linux's is per thread). */
export function setOwnNice(nice: number): void {
  libc ??= Deno.dlopen("libc.so.6", {
    setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
  });
  // threads made later inherit it from the thread that makes them
  for (const task of Deno.readDirSync("/proc/self/task")) {
    // -1 when the thread has ended: nothing to do
    libc.symbols.setpriority(PRIO_PROCESS, Number(task.name), nice);
  }
}
