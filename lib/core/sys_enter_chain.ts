/**
 * One program on sys_enter for captures started together. Every program
 * attached to the tracepoint runs on every syscall of every process, and
 * its dispatch costs ~0.1 µs: `ecap tls`'s four families took a write(2)
 * to /dev/null from 1.18 to 1.66 µs here. Chained, each capture's program
 * is put in a program array all of them share (kern/common.bpf.h's
 * sys_enter_chain), the first one alone is attached, and each ends with a
 * tail call to the next, when one of them has a call in flight (or for an
 * mmap, which every one watches): their count of calls is shared too.
 * @module
 */
import { SharedMap } from "./ffi.ts";

/** Slots of the chain: kern/ecap.h's SYS_ENTER_CHAIN_SLOTS. */
const CHAIN_SLOTS = 8;

/** A capture's place in a chain, given to Capture.start. */
export interface ChainSlot {
  chain: SysEnterChain;
  slot: number;
}

/** The captures' shared program array; disposed once they have started. */
export class SysEnterChain implements Disposable {
  readonly programs: SharedMap = SharedMap.programArray("sys_enter_chain", CHAIN_SLOTS);
  /** kern/common.bpf.h's calls_in_flight, counted over all of them. */
  readonly callsInFlight: SharedMap = SharedMap.array("calls_in_flight", 8, 1);
  #taken = 0;
  #members: { slot: number; attach: () => void }[] = [];
  #attached = false;

  /** The next free place, or undefined when the chain is full (that capture attaches its own). */
  slot(): ChainSlot | undefined {
    return this.#taken < CHAIN_SLOTS ? { chain: this, slot: this.#taken++ } : undefined;
  }

  /** A capture has put its program in its slot; `attach` attaches it to the tracepoint. */
  joined(slot: number, attach: () => void) {
    if (this.#attached) throw new Error("sys_enter chain: joined after it was attached");
    this.#members.push({ slot, attach });
  }

  /** A capture closed (maybe before the chain was attached): its slot is empty. */
  left(slot: number) {
    this.#members = this.#members.filter((m) => m.slot !== slot);
  }

  /** Attaches the first program: the others run from it. */
  attach() {
    if (this.#attached) return;
    this.#attached = true;
    this.#members.sort((a, b) => a.slot - b.slot)[0]?.attach();
  }

  [Symbol.dispose]() {
    this.programs[Symbol.dispose]();
    this.callsInFlight[Symbol.dispose]();
  }
}
