/**
 * The baseline of `npm run bench:api`: a bare node:http server that reads the body, parses the JSON,
 * and answers a JSON body of a given size (the size of the KMS's Encrypt answer). Port from argv[2],
 * response size from argv[3]; prints "ready" when listening.
 */
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const size = Number(process.argv[3] ?? 300);
const padding = 'x'.repeat(Math.max(0, size - 60));

createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let keyId = '';
    try {
      keyId = String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { KeyId?: unknown }).KeyId ?? '');
    } catch {
      keyId = 'bad';
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ Response: { CiphertextBlob: padding, KeyId: keyId, RequestId: '00000000-0000-0000-0000-000000000000' } }));
  });
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
