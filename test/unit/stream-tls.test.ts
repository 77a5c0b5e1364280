/**
 * The stream server's TLS settings (src/stream/tls.ts): self-signed certificates for the addresses
 * a server is reached at, a given certificate checked against its key, fingerprints as users type them.
 */
import { expect } from 'chai';
import * as crypto from 'node:crypto';
import * as os from 'node:os';
import { certificateNames, normalizeFingerprint, resolveTls, selfSignedCertificate } from '../../src/stream/tls.js';

describe('stream TLS (src/stream/tls.ts)', () => {
  it('a self-signed certificate names localhost, loopback and the bound address; key and certificate match', () => {
    const { cert, key } = selfSignedCertificate('192.0.2.77');
    const x509 = new crypto.X509Certificate(cert);
    expect(x509.checkPrivateKey(crypto.createPrivateKey(key))).to.equal(true);
    expect(x509.subjectAltName).to.include('DNS:localhost');
    expect(x509.subjectAltName).to.include('IP Address:127.0.0.1');
    expect(x509.subjectAltName).to.include('IP Address:192.0.2.77');
    expect(x509.checkHost('localhost')).to.equal('localhost');
    expect(x509.checkIP('192.0.2.77')).to.equal('192.0.2.77');
    expect(x509.ca).to.equal(false);
    const days = (Date.parse(x509.validTo) - Date.now()) / 86400e3;
    expect(days).to.be.within(364, 366);
    expect(x509.publicKey.asymmetricKeyDetails?.modulusLength).to.equal(2048);
  });

  it('bound to a wildcard, every interface address is named; a host name is a DNS name', () => {
    const all = certificateNames('0.0.0.0').ips;
    for (const list of Object.values(os.networkInterfaces()))
      for (const a of list ?? []) if (!a.address.startsWith('fe80:')) expect(all).to.include(a.address);
    expect(certificateNames('viewer.example').dns).to.include('viewer.example');
    expect(certificateNames('[fd00::5]').ips).to.include('fd00::5');
  });

  it("resolveTls: 'self-signed' reports its fingerprint; a given pair is checked, its errors name the part", () => {
    const made = resolveTls('self-signed', '127.0.0.1');
    expect(made.info.selfSigned).to.equal(true);
    expect(made.info.fingerprint256).to.equal(new crypto.X509Certificate(made.pem.cert).fingerprint256);
    const given = resolveTls({ cert: made.pem.cert, key: made.pem.key }, '127.0.0.1');
    expect(given.info.selfSigned).to.equal(false);
    expect(given.info.fingerprint256).to.equal(made.info.fingerprint256);
    const other = selfSignedCertificate('127.0.0.1');
    const codeOf = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        return `${(e as { code: string }).code}: ${(e as Error).message}`;
      }
      return 'no error';
    };
    expect(codeOf(() => resolveTls({ cert: made.pem.cert, key: other.key }, 'h'))).to.equal(
      'E_INVALID_ARGUMENT: tls.key is not the private key of tls.cert',
    );
    expect(codeOf(() => resolveTls({ cert: 'not a certificate', key: other.key }, 'h'))).to.match(
      /^E_INVALID_ARGUMENT: .*tls\.cert/,
    );
    expect(codeOf(() => resolveTls({ cert: made.pem.cert, key: 'garbage' }, 'h'))).to.match(
      /^E_INVALID_ARGUMENT: .*tls\.key/,
    );
    expect(codeOf(() => resolveTls('yes' as never, 'h'))).to.match(/^E_INVALID_ARGUMENT: .*tls/);
  });

  it('fingerprints: any case, colons or not, a sha256 prefix; anything else is null', () => {
    const canonical = Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, '0').toUpperCase()).join(
      ':',
    );
    expect(normalizeFingerprint(canonical)).to.equal(canonical);
    expect(normalizeFingerprint(canonical.toLowerCase().replace(/:/g, ''))).to.equal(canonical);
    expect(normalizeFingerprint(`SHA256:${canonical}`)).to.equal(canonical);
    expect(normalizeFingerprint('sha-256 ' + canonical.toLowerCase())).to.equal(canonical);
    expect(normalizeFingerprint(canonical.slice(3))).to.equal(null);
    expect(normalizeFingerprint('zz'.repeat(32))).to.equal(null);
  });
});
