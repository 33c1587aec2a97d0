// An HTTP API handler as it would be deployed behind API Gateway (payload
// format 2.0), nothing edged-specific.
export const handler = async (event) => {
  const path = event.rawPath;
  if (path.startsWith('/items/')) {
    return {
      statusCode: 201,
      headers: { 'content-type': 'application/json', 'x-route-key': event.routeKey, 'x-count': 3 },
      cookies: ['session=abc; Path=/', 'theme=dark'],
      body: JSON.stringify(event),
    };
  }
  if (path === '/plain') {
    return { hello: 'world' };
  }
  if (path === '/binary') {
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    return {
      statusCode: 200,
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes.toString('base64'),
      isBase64Encoded: true,
    };
  }
  if (path === '/fail') {
    throw new Error('the handler failed');
  }
  if (path === '/slow') {
    await new Promise((resolve) => setTimeout(resolve, 3000));
    return { late: true };
  }
  if (path === '/malformed') {
    return { statusCode: 'two hundred' };
  }
  return { statusCode: 404, body: 'no such thing' };
};
