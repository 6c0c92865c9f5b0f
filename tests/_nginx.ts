/**
 * An nginx serving HTTPS (HTTP/1.1 and HTTP/2, TLS 1.2 and 1.3) on
 * loopback from a temporary directory, with a self-signed certificate (or
 * one a test's own CA signed: caSignedCert).
 * @module
 */
import { sh, waitFor } from "./_helpers.ts";

/** A running nginx; dispose to stop it and remove its files. */
export class Nginx implements AsyncDisposable {
  readonly dir: string;
  readonly port: number;
  #child: Deno.ChildProcess;

  private constructor(dir: string, port: number, child: Deno.ChildProcess) {
    this.dir = dir;
    this.port = port;
    this.#child = child;
  }

  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Starts nginx; `files` are served from its root (name → content), and
   * `locations` is more configuration for its server block.
   */
  static async start(
    files: Record<string, string | Uint8Array> = {},
    locations = "",
    { certificate = selfSignedCert }: { certificate?: (dir: string) => Promise<void> } = {},
  ): Promise<Nginx> {
    const dir = await Deno.makeTempDir({ prefix: "ecap-nginx-" });
    await Deno.chmod(dir, 0o755); // workers run as www-data
    const www = `${dir}/www`;
    await Deno.mkdir(www);
    for (const [name, content] of Object.entries(files)) {
      if (typeof content === "string") await Deno.writeTextFile(`${www}/${name}`, content);
      else await Deno.writeFile(`${www}/${name}`, content);
    }
    await certificate(dir);
    const port = freePort();
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port} ssl http2;
    listen [::1]:${port} ssl http2;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root ${www};
    location /upload {
      client_max_body_size 16m;
      client_body_buffer_size 16m;
      return 200 "uploaded\\n";
    }
    ${locations}
  }
}
`,
    );
    const child = new Deno.Command("nginx", {
      args: ["-c", `${dir}/nginx.conf`, "-p", dir],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const n = new Nginx(dir, port, child);
    await waitFor(async () => {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    }, `nginx on port ${port}`);
    return n;
  }

  /** The pid of its one worker, which does the TLS (the master only forks it). */
  workerPid(): number {
    const children = Deno.readTextFileSync(`/proc/${this.pid}/task/${this.pid}/children`);
    const pid = Number(children.trim().split(" ")[0]);
    if (!pid) throw new Error(`nginx ${this.pid} has no worker`);
    return pid;
  }

  /** https://127.0.0.1:PORT + path */
  url(path: string): string {
    return `https://127.0.0.1:${this.port}${path}`;
  }

  async [Symbol.asyncDispose]() {
    try {
      this.#child.kill("SIGTERM"); // nginx: fast shutdown
    } catch { /* gone */ }
    await this.#child.status;
    await this.#child.stderr.cancel().catch(() => {});
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** A self-signed certificate for localhost: DIR/cert.pem and DIR/key.pem. */
export async function selfSignedCert(dir: string) {
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
    "-keyout",
    `${dir}/key.pem`,
    "-out",
    `${dir}/cert.pem`,
  ]);
}

/** Runs openssl(1); throws with its stderr when it fails. */
async function openssl(args: string[]) {
  const r = await sh("openssl", args);
  if (r.code !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

/**
 * A certificate for 127.0.0.1 signed by a CA made for it: DIR/cert.pem and
 * DIR/key.pem, the CA in DIR/ca.pem. For clients that refuse a self-signed
 * server certificate whatever their trust settings (Firefox).
 */
export async function caSignedCert(dir: string) {
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=ecap test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.pem`,
  ]);
  await openssl([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    `${dir}/key.pem`,
    "-out",
    `${dir}/leaf.csr`,
  ]);
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    "subjectAltName=IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    `${dir}/leaf.csr`,
    "-CA",
    `${dir}/ca.pem`,
    "-CAkey",
    `${dir}/ca.key`,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${dir}/leaf.ext`,
    "-out",
    `${dir}/cert.pem`,
  ]);
}

/** A TCP port nobody listens on now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
