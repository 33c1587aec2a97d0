// The handler both sides run: the smallest HTTP API answer, so that what is
// measured is the platform around it.
export const handler = async () => ({
  statusCode: 200,
  headers: { 'content-type': 'text/plain' },
  body: 'ok',
});
