// A WebSocket API handler as it would be deployed behind API Gateway, using
// the AWS SDK's ApiGatewayManagementApi client to push to connections.
import { createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';

const require = createRequire(new URL('../../node/package.json', import.meta.url));
const { ApiGatewayManagementApiClient, PostToConnectionCommand, GetConnectionCommand } =
  require('@aws-sdk/client-apigatewaymanagementapi');

const client = new ApiGatewayManagementApiClient({
  endpoint: process.env.EDGED_URL,
  region: 'us-east-1',
  credentials: { accessKeyId: 'edged', secretAccessKey: 'edged' },
});

export const handler = async (event) => {
  const { eventType, connectionId, routeKey } = event.requestContext;
  if (eventType === 'CONNECT') {
    if (event.queryStringParameters?.token !== 'letmein') {
      return { statusCode: 403 };
    }
    return { statusCode: 200 };
  }
  if (eventType === 'DISCONNECT') {
    appendFileSync(process.env.DISCONNECT_LOG, `${connectionId} ${routeKey}\n`);
    return { statusCode: 200 };
  }
  const message = JSON.parse(event.body);
  if (message.action === 'send') {
    const info = await client.send(new GetConnectionCommand({ ConnectionId: message.to }));
    await client.send(new PostToConnectionCommand({
      ConnectionId: message.to,
      Data: JSON.stringify({ from: connectionId, text: message.text, peerIp: info.Identity.SourceIp }),
    }));
    return { statusCode: 200, body: JSON.stringify({ sent: true }) };
  }
  if (message.action === 'fail') {
    throw new Error('asked to fail');
  }
  return {
    statusCode: 200,
    body: JSON.stringify({ echo: message, connectionId, routeKey, eventType }),
  };
};
