/**
 * The exchange view of a TLS capture (the default): the per-call events of
 * tls_decoder.ts go through an ExchangeAssembler, and HTTP exchanges and
 * blocks of other bytes come out; secrets and packets pass as they are.
 * @module
 */
import type { RecordDecoder } from "../core/module_spec.ts";
import { ExchangeAssembler, type ExchangeItem } from "../http/exchanges.ts";
import type { TlsFamilyEvent } from "./tls_events.ts";

/** Default of --exchange-timeout, in seconds. */
export const DEFAULT_EXCHANGE_TIMEOUT = 30;

/** Wraps a per-call decoder of module `name` into the exchange view. */
export function exchangeDecoder<M extends string>(
  name: M,
  calls: RecordDecoder<TlsFamilyEvent<M>>,
  timeoutSeconds = DEFAULT_EXCHANGE_TIMEOUT,
  // several captures may share one (ecap tls's families: curl to a GnuTLS
  // server is one exchange)
  assembler = newAssembler(timeoutSeconds),
): RecordDecoder<TlsFamilyEvent<M>> {
  const events = (items: ExchangeItem[]): TlsFamilyEvent<M>[] => items.map((x) => toEvent(name, x));
  return {
    decode(view, offset, length) {
      const out: TlsFamilyEvent<M>[] = [];
      for (const ev of calls.decode(view, offset, length)) {
        if (ev.kind !== "data") {
          out.push(ev);
          continue;
        }
        for (const item of assembler.push(ev)) out.push(toEvent(name, item));
      }
      return out;
    },
    tick: (nowNs) => events(assembler.tick(nowNs)),
    flush: () => [...calls.flush(), ...events(assembler.end())],
  };
}

/** An exchange or block as an event: who and when are its first party's and first byte's. */
function toEvent<M extends string>(name: M, x: ExchangeItem): TlsFamilyEvent<M> {
  const [p, timeNs] = x.kind === "stream"
    ? [x.party, x.startNs]
    : [(x.client ?? x.server)!, x.timings.requestStart];
  return {
    ...x,
    module: name,
    timeNs,
    pid: p.pid,
    tid: p.tid ?? p.pid,
    uid: p.uid ?? 0,
    comm: p.comm,
    process: p.process,
    cgroupId: p.cgroupId,
  };
}

/** An assembler with --exchange-timeout's seconds. */
export function newAssembler(timeoutSeconds = DEFAULT_EXCHANGE_TIMEOUT): ExchangeAssembler {
  return new ExchangeAssembler({
    timeoutNs: BigInt(Math.round(timeoutSeconds * 1000)) * 1_000_000n,
  });
}
