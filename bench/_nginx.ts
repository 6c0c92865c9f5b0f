/**
 * An nginx for the benchmarks: one worker serving HTTPS (HTTP/1.1) on
 * loopback, with random (binary) bodies small.bin (1 KiB) and 64k.bin.
 * @module
 */
import { Proc, selfSignedCert, sleep } from "./_util.ts";

/** A running nginx; dispose to stop it and remove its files. */
export class Nginx implements AsyncDisposable {
  constructor(readonly dir: string, readonly port: number, readonly proc: Proc) {}

  static async start(tmp: string): Promise<Nginx> {
    const dir = await Deno.makeTempDir({ dir: tmp, prefix: "nginx-" });
    await Deno.chmod(dir, 0o755); // the worker runs as www-data
    const www = `${dir}/www`;
    await Deno.mkdir(www);
    // random (binary) bodies: ecap's text output then says "[N bytes binary body]"
    for (const [name, n] of [["small.bin", 1024], ["64k.bin", 65536]] as const) {
      const body = new Uint8Array(n);
      for (let i = 0; i < n; i += 65536) crypto.getRandomValues(body.subarray(i, i + 65536));
      await Deno.writeFile(`${www}/${name}`, body, { mode: 0o644 });
    }
    await selfSignedCert("127.0.0.1", `${dir}/key.pem`, `${dir}/cert.pem`);
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  default_type application/octet-stream;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root ${www};
  }
}
`,
    );
    const proc = new Proc("nginx", ["-c", `${dir}/nginx.conf`, "-p", dir]);
    const n = new Nginx(dir, port, proc);
    for (let i = 0; i < 100; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return n;
      } catch {
        if (proc.exited) break;
        await sleep(50);
      }
    }
    await n[Symbol.asyncDispose]();
    throw new Error(`nginx did not start: ${proc.stderr}`);
  }

  url(path: string) {
    return `https://127.0.0.1:${this.port}/${path}`;
  }

  async [Symbol.asyncDispose]() {
    await this.proc.stop("SIGTERM");
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
