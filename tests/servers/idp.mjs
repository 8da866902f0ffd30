// A real OpenID Provider (npm oidc-provider) for Vagt's tests: client-credentials grants that
// issue JWT access tokens for the resource urn:vagt (audience "vagt").
// Configuration from the environment: PORT, JWKS_FILE (private keys), CLIENTS_FILE (clients with
// their roles and groups), TOKEN_TTL seconds. Prints the issuer URL once it listens.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = JSON.parse(readFileSync(process.env.JWKS_FILE, 'utf8'));
const clients = JSON.parse(readFileSync(process.env.CLIENTS_FILE, 'utf8'));
const ttl = Number(process.env.TOKEN_TTL || 300);
const byId = Object.fromEntries(clients.map((c) => [c.client_id, c]));

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'api',
  })),
  scopes: ['api'],
  jwks,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:vagt',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => {
        if (resource !== 'urn:vagt') throw new errors.InvalidTarget();
        return {
          audience: 'vagt',
          scope: 'api',
          accessTokenFormat: 'jwt',
          accessTokenTTL: ttl,
          jwt: { sign: { alg: byId[client.clientId].alg || 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const client = byId[token.clientId];
    return {
      preferred_username: client.name || client.client_id,
      realm_access: { roles: client.roles || [] },
      groups: client.groups || [],
    };
  },
});

// Count requests per path so tests can see how often the gateway fetched the JWKS.
const counts = {};
const callback = provider.callback();
const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/test/counts') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(counts));
    return;
  }
  counts[path] = (counts[path] || 0) + 1;
  callback(req, res);
});
server.listen(port, '127.0.0.1', () => console.log(issuer));
