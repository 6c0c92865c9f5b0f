/**
 * ecap's own CPU priority. Under full load a reader with an equal share of
 * the CPU falls behind in bursts and the ring overflows; with a higher
 * priority it is scheduled first when records wait, and the traced
 * processes wait for it instead (64 KiB HTTPS responses under wrk on 2
 * CPUs: 28,395 records lost at nice 0, 416 at -10, same throughput).
 * @module
 */
import { setPriority } from "node:os";

/** Sets the nice value of every thread of this process (Linux's is per thread). */
export function setOwnNice(nice: number): void {
  // threads made later inherit it from the thread that makes them
  for (const task of Deno.readDirSync("/proc/self/task")) {
    try {
      setPriority(Number(task.name), nice);
    } catch {
      // the thread has ended
    }
  }
}
