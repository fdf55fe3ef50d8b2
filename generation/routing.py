from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/jobs/<str:job_id>/", consumers.JobConsumer.as_asgi(), name="ws-job"),
    path("ws/projects/<slug:slug>/", consumers.ProjectConsumer.as_asgi(), name="ws-project"),
    path("ws/workers/", consumers.WorkersConsumer.as_asgi(), name="ws-workers"),
]
