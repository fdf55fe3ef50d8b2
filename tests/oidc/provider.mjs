// An OpenID Connect provider (panva's oidc-provider, OpenID Certified) on loopback for the single sign-on
// tests: `node provider.mjs CONFIG.json`. The config names the issuer URL, the clients and the accounts
// with their claims (read at every sign-in); the sign-in form is the library's development form (any password; the login is the
// account id), and first-party consent is granted without asking.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const readConfig = () => JSON.parse(readFileSync(process.argv[2], 'utf8'));
const config = readConfig();
const { port } = new URL(config.issuer);

const provider = new Provider(config.issuer, {
  clients: config.clients,
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'given_name', 'family_name'],
    groups: ['groups'],
  },
  cookies: { keys: ['studio-tests-only'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = readConfig().accounts[id]; // read afresh: tests change claims between sign-ins
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
  async loadExistingGrant(ctx) {
    const { client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
});
for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (ctx, error) => console.error(`${event}: ${error.message} ${error.error_description || ''}`));
}
provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${config.issuer}`);
});
